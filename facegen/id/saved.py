"""Saved identity embeddings: what ``facegen embed --save`` writes and ``generate --id-embeds`` reads.

A saved identity is two files side by side::

    me.npy    float32 (n, dim): the raw vectors as the encoder made them, one row per reference
              photo of one person (several rows are averaged like several photos); a (dim,)
              vector is read as one row
    me.json   {"encoder": "<registry name>", "dim": D, "count": n, "names": [...], "sources": [...]}

The ``.npy`` stays a plain array any tool can read; the sidecar says which recognition network
made it, so an adapter can refuse vectors of another one (``EncoderMismatchError``). The layout
is the ``.npy`` + ``.json`` form ``facegen dataset-report --reference`` reads, ``names`` marking
every row as the same person.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError
from facegen.id.embedding import IDEmbedding, check_same_encoder

KIND = "facegen identity embeddings"


def sidecar_of(path: str | os.PathLike[str]) -> Path:
    """The JSON file that names the encoder of ``path`` (``me.npy`` -> ``me.json``)."""
    return Path(path).with_suffix(".json")


def save_id_embeds(path: str | os.PathLike[str], embeddings: Sequence[IDEmbedding],
                   sources: Sequence[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write the embeddings of one person to ``path`` (``.npy``) and its sidecar ``.json``
    (atomically, sidecar last). ``sources`` (one per embedding) are recorded as they are
    (the image and face each came from). Returns both paths."""
    from facegen import __version__  # noqa: PLC0415
    from facegen.io.atomic import atomic_write  # noqa: PLC0415 - the one fsync'd atomic writer

    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise InvalidArgumentError(f"{p}: saved embeddings are an .npy file (its encoder goes in "
                                   f"{sidecar_of(p).name} beside it)")
    if not embeddings:
        raise InvalidArgumentError(f"{p}: no embeddings to save")
    encoder = check_same_encoder(embeddings)
    vectors = np.stack([e.vector for e in embeddings]).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    meta = {"kind": KIND, "encoder": encoder, "dim": int(vectors.shape[-1]), "count": len(embeddings),
            "names": [p.stem] * len(embeddings), "sources": list(sources or []), "facegen": __version__}
    side = sidecar_of(p)
    atomic_write(p, lambda fh: fh.write(buf.getvalue()))
    atomic_write(side, lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode("utf-8")))
    return p, side


def load_id_embeds(path: str | os.PathLike[str]) -> list[IDEmbedding]:
    """The embeddings saved in ``path`` (one per row) with the encoder its sidecar names.
    Every problem is an :class:`InvalidArgumentError` naming the file and what to do."""
    from facegen.id.registry import get_encoder_spec  # noqa: PLC0415

    from facegen.io.arrays import load_npy  # noqa: PLC0415
    from facegen.io.files import Opt, read_json  # noqa: PLC0415

    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise InvalidArgumentError(f"{p}: give a saved embedding (.npy with its .json), as "
                                   "'facegen embed PHOTO --save FILE.npy' writes")
    # regular files only, under a cap, header checked before any allocation (facegen.io.files)
    x = load_npy(p, what="", error=InvalidArgumentError)
    if x.ndim not in (1, 2) or x.size == 0 or not np.issubdtype(x.dtype, np.number):
        raise InvalidArgumentError(f"{p}: expected a numeric (dim,) or (n, dim) array, got {x.dtype} {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError(f"{p} holds NaN or infinite values")
    side = sidecar_of(p)
    if not side.exists() and not side.is_symlink():
        raise InvalidArgumentError(f"{p} has no {side.name} beside it naming its encoder; save embeddings "
                                   f"with 'facegen embed PHOTO --save {p.name}'")
    meta = read_json(side, what="", error=InvalidArgumentError,
                     schema={"encoder": str, "names": Opt([str])})    # "sources" is free-form
    encoder = meta["encoder"]
    if not encoder:
        raise InvalidArgumentError(f"{side} does not name the encoder of {p.name} ({{\"encoder\": NAME}})")
    try:
        spec = get_encoder_spec(encoder)
    except InvalidArgumentError as exc:   # an unknown name is refused, naming the choices
        raise InvalidArgumentError(f"{side}: {exc}") from None
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    if rows.shape[1] != spec.dim:
        raise InvalidArgumentError(f"{p}: {rows.shape[1]}-D vectors, but encoder '{encoder}' makes {spec.dim}-D ones")
    return [IDEmbedding(row, encoder, meta={"source": str(p), "row": i})     # IDEmbedding checks the range
            for i, row in enumerate(rows)]
