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

#: a saved identity is a few KB; anything this large is not one
MAX_FILE_BYTES = 16 * 2**20
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

    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise InvalidArgumentError(f"{p}: give a saved embedding (.npy with its .json), as "
                                   "'facegen embed PHOTO --save FILE.npy' writes")
    if not p.is_file():
        raise InvalidArgumentError(f"{p}: no such file" if not p.exists() else f"{p} is not a regular file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise InvalidArgumentError(f"{p} is {p.stat().st_size} bytes: too large for saved embeddings")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidArgumentError(f"{p} is not a plain .npy array: {exc}") from None
    if x.ndim not in (1, 2) or x.size == 0 or not np.issubdtype(x.dtype, np.number):
        raise InvalidArgumentError(f"{p}: expected a numeric (dim,) or (n, dim) array, got {x.dtype} {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError(f"{p} holds NaN or infinite values")
    side = sidecar_of(p)
    if not side.is_file():
        raise InvalidArgumentError(f"{p} has no {side.name} beside it naming its encoder; save embeddings "
                                   f"with 'facegen embed PHOTO --save {p.name}'")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise InvalidArgumentError(f"{side} is not readable JSON: {exc}") from None
    encoder = meta.get("encoder") if isinstance(meta, dict) else None
    if not isinstance(encoder, str) or not encoder:
        raise InvalidArgumentError(f"{side} does not name the encoder of {p.name} ({{\"encoder\": NAME}})")
    try:
        spec = get_encoder_spec(encoder)
    except InvalidArgumentError as exc:   # an unknown name is refused, naming the choices
        raise InvalidArgumentError(f"{side}: {exc}") from None
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    if rows.shape[1] != spec.dim:
        raise InvalidArgumentError(f"{p}: {rows.shape[1]}-D vectors, but encoder '{encoder}' makes {spec.dim}-D ones")
    return [IDEmbedding(row.astype(np.float32), encoder, meta={"source": str(p), "row": i})
            for i, row in enumerate(rows)]
