"""Saved identity embeddings: what ``facegen embed --save`` writes and ``generate --id-embeds`` reads.

A saved identity is two files side by side::

    me.npy    float32 (n, dim): the raw vectors as the encoder made them, one row per reference
              photo of one person (several rows are averaged like several photos); a (dim,)
              vector is read as one row
    me.json   {"encoder": "<registry name>", "dim": D, "count": n, "names": [...], "sources": [...]}

Embeddings that carry token states (PuLID's ``meta["vit_hidden"]``) add a third file, ``me.vit_hidden.npz``
(members ``vit_hidden_<row>`` and, for averaged rows, ``id_conds_<row>``), named in the sidecar as
``"vit_hidden": "me.vit_hidden.npz"``; an encoder whose embeddings need them refuses a save without.

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
#: what a row's token states are saved as, and the members of that file
STATES_SUFFIX = ".vit_hidden.npz"
STATE_KEYS = ("vit_hidden", "id_conds")


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
    states = _token_states(embeddings, p)
    side = sidecar_of(p)
    if states is not None:
        meta["vit_hidden"] = p.with_suffix(STATES_SUFFIX).name
        atomic_write(p.with_suffix(STATES_SUFFIX), lambda fh: fh.write(states))
    atomic_write(p, lambda fh: fh.write(buf.getvalue()))
    atomic_write(side, lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode("utf-8")))
    return p, side


def _token_states(embeddings: Sequence[IDEmbedding], p: Path) -> bytes | None:
    """The ``.vit_hidden.npz`` bytes of the embeddings' token states; None when none carries any."""
    has = [e.meta.get("vit_hidden") is not None for e in embeddings]
    if not any(has):
        return None
    if not all(has):
        raise InvalidArgumentError(f"{p}: some embeddings carry EVA hidden states (vit_hidden) and some do not")
    arrays = {f"{key}_{i}": np.asarray(e.meta[key], dtype=np.float32)
              for i, e in enumerate(embeddings) for key in STATE_KEYS if e.meta.get(key) is not None}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _attach_states(rows: list[IDEmbedding], p: Path, side: Path, meta: dict[str, Any],
                   needs_states: bool) -> list[IDEmbedding]:
    """The rows with their saved token states (the sidecar's ``vit_hidden`` file beside ``p``)."""
    from facegen.io.arrays import load_npz  # noqa: PLC0415

    name = meta.get("vit_hidden")
    if name is None:
        if needs_states:
            raise InvalidArgumentError(f"{p} was saved without the EVA hidden states encoder '{rows[0].encoder}' "
                                       f"makes; save it again with 'facegen embed PHOTO --encoder {rows[0].encoder} "
                                       f"--save {p.name}'")
        return rows
    if not isinstance(name, str) or name != Path(name).name or not name.endswith(STATES_SUFFIX):
        raise InvalidArgumentError(f"{side}: \"vit_hidden\" must name a *{STATES_SUFFIX} file beside it, got {name!r}")
    arrays = load_npz(p.parent / name, what="", error=InvalidArgumentError)
    out = []
    for i, row in enumerate(rows):
        extra = {key: arrays[f"{key}_{i}"] for key in STATE_KEYS if f"{key}_{i}" in arrays}
        hidden = extra.get("vit_hidden")
        if hidden is None or hidden.ndim != 3 or not np.issubdtype(hidden.dtype, np.floating) \
                or not np.all(np.isfinite(hidden)):
            raise InvalidArgumentError(f"{p.parent / name}: row {i} has no finite (L, T, W) vit_hidden array")
        out.append(IDEmbedding(row.vector, row.encoder, meta={**row.meta, **extra}))
    stray = sorted(set(arrays) - {f"{k}_{i}" for k in STATE_KEYS for i in range(len(rows))})
    if stray:
        raise InvalidArgumentError(f"{p.parent / name} holds arrays {p.name} has no row for ({', '.join(stray[:3])})")
    return out


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
                     schema={"encoder": str, "names": Opt([str]), "vit_hidden": Opt(str)})  # "sources" is free-form
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
    embs = [IDEmbedding(row, encoder, meta={"source": str(p), "row": i})     # IDEmbedding checks the range
            for i, row in enumerate(rows)]
    return _attach_states(embs, p, side, meta, needs_states=spec.backend == "eva-composite")
