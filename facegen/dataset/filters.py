"""Filters on generated images: a face is found, the identity is consistent (judged by an
independent encoder), no near-duplicates, optional quality threshold.

A :class:`FilterChain` scores each image once (:meth:`FilterChain.score`) and then decides,
per identity, which new images pass (:meth:`FilterChain.decide`) given the ones already
accepted.  The runner regenerates the rejected ones with the next attempt's seed.

ID consistency cannot compare an image with the identity vector (that lives in the
conditioning encoder's space); it compares the image's embedding by the *independent*
encoder with the mean of the identity's other images (leave-one-out), in that encoder's own
metric and threshold (``facegen.id.encoders.similarity``, registry threshold).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from facegen.errors import InvalidArgumentError, NoFaceError
from facegen.id.embedding import IDEmbedding, mean_embedding
from facegen.paths import DEFAULT_ACCESS, ModelAccess

if TYPE_CHECKING:  # pragma: no cover
    from facegen.dataset.spec import DatasetSpec

logger = logging.getLogger(__name__)

REASONS = ("no_face", "quality", "id_consistency", "duplicate")

EmbedFn = Callable[[np.ndarray], "IDEmbedding | None"]
FaceFn = Callable[[np.ndarray], bool]
QualityFn = Callable[[np.ndarray], float]
SimilarityFn = Callable[[IDEmbedding, IDEmbedding], float]


# ---------------------------------------------------------------------- image measures
def average_hash(rgb: np.ndarray, size: int = 16) -> int:
    """Average hash (``size**2`` bits, 256 by default): the grey image shrunk to size x size
    (area interpolation), one bit per cell above the mean."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
    return int.from_bytes(np.packbits(small > small.mean()).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (blur gives low values)."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


# ---------------------------------------------------------------------- default callables
class EncoderEmbedFn:
    """``embed_fn`` on a registered encoder: the largest face's embedding, None if no face.

    Picklable (the encoder loads in the process that first calls it), so it can travel to
    worker processes and Ray actors.
    """

    def __init__(self, encoder: str, access: ModelAccess = DEFAULT_ACCESS) -> None:
        self.encoder = encoder
        self.access = access

    def analyzer(self) -> Any:
        from facegen.id.encoders import get_analyzer

        return get_analyzer(self.encoder, self.access)

    def __call__(self, rgb: np.ndarray) -> IDEmbedding | None:
        try:
            found = self.analyzer().analyze(rgb, policy="largest")
        except NoFaceError:
            return None
        return found[0] if found else None

    def embed_many(self, rgbs: Sequence[np.ndarray]) -> list[IDEmbedding | None]:
        """The largest face of each image, through the encoder's front door: all images detected
        in one batch, their faces aligned and embedded in one batch."""
        from facegen.faces.detect import select_faces

        analyzer = self.analyzer()
        faces = [select_faces(found, "largest")[0] if found else None for found in analyzer.detect_many(list(rgbs))]
        embs = iter(analyzer.embed_batch([(rgb, f) for rgb, f in zip(rgbs, faces) if f is not None]))
        return [None if f is None else next(embs) for f in faces]


class DetectFaceFn:
    """``face_fn``: True when the detector finds a usable face."""

    def __init__(self, backend: str = "dlib") -> None:
        self.backend = backend

    def __call__(self, rgb: np.ndarray) -> bool:
        from facegen.faces import detect_faces

        try:
            return bool(detect_faces(rgb, backend=self.backend))
        except NoFaceError:
            return False


def _default_similarity(a: IDEmbedding, b: IDEmbedding) -> float:
    from facegen.id.encoders import similarity

    return similarity(a, b)


def _encoder_metric(name: str) -> tuple[str, float | None]:
    from facegen.errors import InvalidArgumentError
    from facegen.id.registry import get_encoder_spec

    try:
        spec = get_encoder_spec(name)          # a registered name or a trained run's folder
    except InvalidArgumentError:
        return "cosine", None
    return spec.metric, spec.threshold


# ---------------------------------------------------------------------- chain
@dataclass
class ImageScores:
    """What the filters measured on one image."""

    face: bool | None = None
    embedding: IDEmbedding | None = None
    ahash: int = 0
    quality: float | None = None
    id_similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 6)

        return {"face": self.face, "id_similarity": r(self.id_similarity), "quality": r(self.quality),
                "ahash": f"{self.ahash:064x}"}


@dataclass(frozen=True)
class FilterConfig:
    face: bool = True
    id_consistency: bool = True
    dedup: bool = True
    min_id_similarity: float | None = None   # None: the judge encoder's registry threshold
    dedup_hash_distance: int = 12
    dedup_similarity: float = 0.95
    min_quality: float | None = None

    @property
    def active(self) -> bool:
        return self.face or self.id_consistency or self.dedup or self.min_quality is not None


class FilterChain:
    """Scores images and decides which pass; see the module docstring."""

    def __init__(self, config: FilterConfig, embed_fn: EmbedFn | None = None, face_fn: FaceFn | None = None,
                 quality_fn: QualityFn | None = None, similarity_fn: SimilarityFn | None = None) -> None:
        if config.id_consistency and embed_fn is None:
            raise InvalidArgumentError("the ID-consistency filter needs an embed_fn (an independent encoder)")
        if config.face and embed_fn is None and face_fn is None:
            raise InvalidArgumentError("the face filter needs an embed_fn or a face_fn")
        self.config = config
        self.embed_fn = embed_fn
        self.face_fn = face_fn
        self.quality_fn = quality_fn or (sharpness if config.min_quality is not None else None)
        self.similarity_fn = similarity_fn or _default_similarity

    def score(self, rgb: np.ndarray) -> ImageScores:
        s = ImageScores(ahash=average_hash(rgb))
        if self.embed_fn is not None:
            s.embedding = self.embed_fn(rgb)
            s.face = s.embedding is not None
        if self.face_fn is not None and (s.face is None or s.face):
            s.face = bool(self.face_fn(rgb))
        if self.quality_fn is not None:
            s.quality = float(self.quality_fn(rgb))
        return s

    def score_many(self, rgbs: Sequence[np.ndarray]) -> list[ImageScores]:
        """:meth:`score` for a batch; the embeddings in one call when ``embed_fn`` batches."""
        many = getattr(self.embed_fn, "embed_many", None)
        if many is None:
            return [self.score(rgb) for rgb in rgbs]
        out = []
        for rgb, emb in zip(rgbs, many(list(rgbs))):
            s = ImageScores(ahash=average_hash(rgb), embedding=emb, face=emb is not None)
            if self.face_fn is not None and s.face:
                s.face = bool(self.face_fn(rgb))
            if self.quality_fn is not None:
                s.quality = float(self.quality_fn(rgb))
            out.append(s)
        return out

    def _threshold(self, emb: IDEmbedding) -> float:
        if self.config.min_id_similarity is not None:
            return self.config.min_id_similarity
        _, thr = _encoder_metric(emb.encoder)
        if thr is None:
            raise InvalidArgumentError(
                f"encoder '{emb.encoder}' is not registered: give min_id_similarity explicitly")
        return thr

    def decide(self, accepted: Mapping[int, ImageScores], candidates: Mapping[int, ImageScores]) -> dict[int, str | None]:
        """For each candidate (image index -> scores) of one identity: None if it passes, else
        the reason it is rejected (one of :data:`REASONS`).  Fills ``id_similarity``."""
        cfg = self.config
        verdict: dict[int, str | None] = {}
        alive: list[int] = []
        for idx in sorted(candidates):
            s = candidates[idx]
            if cfg.face and not s.face:
                verdict[idx] = "no_face"
            elif cfg.min_quality is not None and (s.quality is None or not math.isfinite(s.quality)
                                                  or s.quality < cfg.min_quality):  # NaN: not measured
                verdict[idx] = "quality"
            else:
                verdict[idx] = None
                alive.append(idx)

        # ID consistency: leave-one-out against the mean of the identity's other images
        pool = {i: s.embedding for i, s in accepted.items() if s.embedding is not None}
        pool.update({i: candidates[i].embedding for i in alive if candidates[i].embedding is not None})
        for idx in alive:
            emb = candidates[idx].embedding
            others = [e for i, e in sorted(pool.items()) if i != idx]
            if emb is None or not others:
                continue
            metric, _ = _encoder_metric(emb.encoder)
            centre = mean_embedding(others, normalise_each=(metric == "cosine"))
            sim = float(self.similarity_fn(emb, centre))
            candidates[idx].id_similarity = sim
            if cfg.id_consistency and not sim >= self._threshold(emb):   # NaN fails too
                verdict[idx] = "id_consistency"
        alive = [i for i in alive if verdict[i] is None]

        # near-duplicates: accepted images first, then candidates in index order
        if cfg.dedup:
            kept: list[ImageScores] = [accepted[i] for i in sorted(accepted)]
            for idx in alive:
                s = candidates[idx]
                if any(self._duplicate(s, k) for k in kept):
                    verdict[idx] = "duplicate"
                else:
                    kept.append(s)
        return verdict

    def _duplicate(self, a: ImageScores, b: ImageScores) -> bool:
        if hamming(a.ahash, b.ahash) <= self.config.dedup_hash_distance:
            return True
        if a.embedding is not None and b.embedding is not None and a.embedding.encoder == b.embedding.encoder:
            return float(self.similarity_fn(a.embedding, b.embedding)) >= self.config.dedup_similarity
        return False


def build_filter_chain(spec: DatasetSpec, embed_fn: EmbedFn | None = None, face_fn: FaceFn | None = None,
                       quality_fn: QualityFn | None = None, similarity_fn: SimilarityFn | None = None
                       ) -> FilterChain | None:
    """The chain a (resolved) spec asks for, or None when every filter is off.

    ``embed_fn`` defaults to the spec's ``filter_encoder`` (an independent encoder chosen
    by :meth:`DatasetSpec.resolved`).
    """
    config = FilterConfig(
        face=bool(spec.filters), id_consistency=bool(spec.filters), dedup=bool(spec.dedup),
        min_id_similarity=spec.min_id_similarity, dedup_hash_distance=spec.dedup_hash_distance,
        dedup_similarity=spec.dedup_similarity, min_quality=spec.min_quality)
    if not config.active:
        return None
    if spec.filters and embed_fn is None:
        if spec.filter_encoder is None:
            raise InvalidArgumentError("filters are on but no filter_encoder was resolved: call spec.resolved()")
        embed_fn = EncoderEmbedFn(spec.filter_encoder, spec.access())
    return FilterChain(config, embed_fn=embed_fn, face_fn=face_fn, quality_fn=quality_fn,
                       similarity_fn=similarity_fn)
