"""IDEmbedding: an identity vector that remembers which encoder made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from facegen.errors import EncoderMismatchError, InvalidArgumentError
from facegen.faces.types import Face


@dataclass(frozen=True, eq=False)
class IDEmbedding:
    """An identity vector.

    vector: float32 ``(D,)`` as the encoder produced it (raw, never silently normalised).
    encoder: the registry name of the encoder that produced it (``facegen.id.ENCODERS``).
    face: the face it was computed from, when known.
    """

    vector: np.ndarray
    encoder: str
    face: Face | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw = np.asarray(self.vector)
        if np.iscomplexobj(raw) or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
            raise InvalidArgumentError(f"an ID embedding must be a real-valued vector, got {raw.dtype} "
                                       f"(encoder {self.encoder})")
        with np.errstate(over="ignore", invalid="ignore"):
            vec = raw.astype(np.float32).reshape(-1)
        if vec.size == 0 or not np.all(np.isfinite(vec)):
            raise InvalidArgumentError(f"an ID embedding must be a finite, non-empty vector (encoder {self.encoder})")
        norm = float(np.linalg.norm(vec.astype(np.float64)))
        with np.errstate(over="ignore"):
            norm32 = np.linalg.norm(vec)
        if not norm > 0 or not np.isfinite(norm32):
            what = "all zeros (no direction)" if not norm > 0 else f"of norm {norm:.3g} (float32 overflows)"
            raise InvalidArgumentError(f"an ID embedding must be a non-zero vector of moderate size; this one is "
                                       f"{what} (encoder {self.encoder})")
        object.__setattr__(self, "vector", vec)

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.vector))

    def normalised(self) -> np.ndarray:
        """The unit-norm vector (insightface's ``normed_embedding``)."""
        n = self.norm
        return self.vector / n if n > 0 else self.vector.copy()

    def as_adapter_input(self, normalise: bool) -> np.ndarray:
        """The vector an adapter expects: unit-norm or raw, as its contract says."""
        return self.normalised() if normalise else self.vector.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "embedding": [round(float(v), 6) for v in self.vector]}


def check_same_encoder(embeddings: Sequence[IDEmbedding]) -> str:
    """Return the common encoder name, or raise EncoderMismatchError."""
    names = {e.encoder for e in embeddings}
    if len(names) != 1:
        raise EncoderMismatchError(
            f"embeddings come from different encoders ({', '.join(sorted(names))}): "
            "vectors of different recognition networks cannot be compared or mixed")
    return names.pop()


def mean_embedding(embeddings: Sequence[IDEmbedding], normalise_each: bool = True) -> IDEmbedding:
    """Average several embeddings of one person (from one encoder).

    Each vector is unit-normalised before averaging when ``normalise_each`` (insightface
    practice for normalised contracts); the mean is rescaled to the average input norm, so a
    raw-vector contract keeps its usual magnitude.

    Embeddings that carry token states (``meta["vit_hidden"]``, PuLID's EVA states ``(L, T, W)``)
    keep them concatenated along the tokens, ``(L, n*T, W)``, as upstream PuLID v1.1 does for
    several ID images, with the per-photo vectors in ``meta["id_conds"]`` ``(n, D)``.
    """
    if not embeddings:
        raise InvalidArgumentError("mean_embedding needs at least one embedding")
    enc = check_same_encoder(embeddings)
    vecs = np.stack([e.normalised() if normalise_each else e.vector for e in embeddings])
    mean = vecs.mean(axis=0)
    target_norm = float(np.mean([e.norm for e in embeddings]))
    n = float(np.linalg.norm(mean))
    if n > 0:
        mean = mean / n * target_norm
    meta: dict[str, Any] = {"averaged_from": len(embeddings)}
    meta.update(merged_token_states(embeddings))
    return IDEmbedding(mean.astype(np.float32), enc, face=embeddings[0].face, meta=meta)


def merged_token_states(embeddings: Sequence[IDEmbedding]) -> dict[str, np.ndarray]:
    """``{"vit_hidden": (L, sum T, W), "id_conds": (n, D)}`` of embeddings that all carry token
    states; ``{}`` when none does; an error when only some do or their layers/widths differ."""
    states = [e.meta.get("vit_hidden") for e in embeddings]
    if all(h is None for h in states):
        return {}
    if any(h is None for h in states):
        raise InvalidArgumentError("some of these embeddings carry EVA hidden states (vit_hidden) and some do not; "
                                   "embed every photo with the same encoder")
    arrays = [np.asarray(h, dtype=np.float32) for h in states]
    if len({(a.ndim, a.shape[0], a.shape[-1]) for a in arrays}) != 1 or arrays[0].ndim != 3:
        raise InvalidArgumentError(f"vit_hidden shapes do not match: {', '.join(str(a.shape) for a in arrays)}")
    conds = [np.asarray(e.meta.get("id_conds", e.vector[None]), dtype=np.float32) for e in embeddings]
    return {"vit_hidden": np.concatenate(arrays, axis=1), "id_conds": np.concatenate(conds, axis=0)}
