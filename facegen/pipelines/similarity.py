"""Stage 5 of generation: how much each output looks like the person asked for.

:func:`make_scorer` builds the judge once per call: with reference photos, an encoder
*independent* of the conditioning one (:class:`~facegen.metrics.IDJudge`); with embeddings
only (or several identities), the identities' own encoder, the minimum over identities.
A judge that cannot run (no model installed, no face found) gives ``None``, never a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facegen.errors import FacegenError
from facegen.id.embedding import IDEmbedding, mean_embedding
from facegen.paths import ModelAccess

logger = logging.getLogger(__name__)

Scorer = Callable[[Sequence[Any]], list[float | None]]


def similarity_text(value: float | None, judge: str | None = "") -> str:
    """An ID similarity as a person reads it: the figure, or why there is none (``judge``: the
    judge's name as recorded, ``None`` when no judge could run; the default: one ran)."""
    if value is not None:
        return f"{value:.3f}"
    if judge is None:
        return "n/a (not measured: no ID judge ran for this output)"
    return "n/a (no face found in the result)"


def unmeasured(images: Sequence[Any]) -> list[float | None]:
    return [None] * len(images)


def _rgb(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)


def _guarded(fn: Callable[[np.ndarray], float | None]) -> Scorer:
    def score(images: Sequence[Any]) -> list[float | None]:
        try:
            return [fn(_rgb(im)) for im in images]
        except FacegenError as exc:
            logger.warning("ID similarity not measured: %s", exc)
            return [None] * len(images)
    return score


def make_scorer(encoder: str, identities: Sequence[IDEmbedding], reference_rgbs: Sequence[np.ndarray] | None,
                access: ModelAccess) -> tuple[Scorer, str | None]:
    """``(score, judge name)``: ``score(images)`` gives each image's similarity to the
    reference; the judge and the reference embedding are made once, here."""
    try:
        from facegen.metrics import IDJudge, id_similarity
    except ImportError:  # metrics is optional for the pipeline
        return unmeasured, None
    try:
        if reference_rgbs and len(identities) == 1:
            judge = IDJudge.create(exclude=encoder, access=access)
            refs = [r for r in (judge.reference(rgb) for rgb in reference_rgbs) if r is not None]
            ref = (mean_embedding(refs) if len(refs) > 1 else refs[0]) if refs else None
            return _guarded(lambda rgb: judge.score(ref, rgb)), judge.encoder_name
    except FacegenError as exc:
        logger.warning("ID similarity not measured: %s", exc)
        return unmeasured, None

    def own(rgb: np.ndarray) -> float | None:
        per = [id_similarity(ident, rgb, access) for ident in identities]
        return None if any(s is None for s in per) else min(per)  # type: ignore[type-var]
    return _guarded(own), encoder


@dataclass(frozen=True)
class BatchScorer:
    """``score(first_index, images)`` → one similarity per image, and the judge's name."""

    fn: Callable[[int, Sequence[Any]], list[float | None]]
    judge: str | None

    def __call__(self, first: int, images: Sequence[Any]) -> list[float | None]:
        return self.fn(first, images)


def batch_scorer(encoder: str, samples: Sequence[Any], identities: Sequence[IDEmbedding],
                 reference_rgbs: Sequence[np.ndarray] | None, measure: bool,
                 access: ModelAccess) -> BatchScorer:
    """Off; one judge for N images of one identity (``samples`` all the same); or each image
    against its own sample's identities (the identities' own encoder)."""
    if not measure:
        return BatchScorer(lambda first, images: unmeasured(images), None)
    if all(s is samples[0] for s in samples):
        fn, judge = make_scorer(encoder, identities, reference_rgbs, access)
        return BatchScorer(lambda first, images: fn(images), judge)

    def per_sample(first: int, images: Sequence[Any]) -> list[float | None]:
        return [make_scorer(encoder, list(samples[first + j].identities), None, access)[0]([im])[0]
                for j, im in enumerate(images)]
    return BatchScorer(per_sample, encoder)
