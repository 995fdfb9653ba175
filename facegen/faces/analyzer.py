"""The one front door to a face: detect → select → align → embed.

A :class:`FaceAnalyzer` is built from an encoder entry (:func:`facegen.id.encoders.get_analyzer`):
the entry decides the detector (SCRFD for the insightface packs, dlib for the dlib
descriptor), the alignment (its crop template and size) and the network that embeds the
aligned crop.  Generation, the edit jobs, the judge and the dataset filters all reach faces
through it, so a face is found, aligned and embedded the same way in every job.

This module sits in the faces layer and knows no network: the embedder (aligned crops →
vectors) and what a vector becomes (``make``, e.g. an ``IDEmbedding``) are handed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from facegen.errors import InvalidArgumentError
from facegen.faces.align import warp_face
from facegen.faces.detect import Detector, FacePolicy, detect_faces, detect_faces_many, select_faces
from facegen.faces.types import AlignedFace, Face

E = TypeVar("E")


class Aligner(Protocol):
    size: int

    def align(self, rgb: np.ndarray, face: Face) -> AlignedFace: ...


class CropEmbedder(Protocol):
    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, D)`` vectors of N aligned RGB crops."""


@dataclass(frozen=True)
class WarpAligner:
    """Similarity warp of the five keypoints onto a template (insightface's ``norm_crop``)."""

    template: str
    size: int

    def align(self, rgb: np.ndarray, face: Face) -> AlignedFace:
        crop, m = warp_face(rgb, face.kps, self.size, self.template)  # type: ignore[arg-type]
        return AlignedFace(face, crop, m)


class FaceAnalyzer(Generic[E]):
    """detect (the entry's detector) → select (policy) → align (the entry's template) → embed.

    ``detector``: a detector, or a function making one on first use; ``make(vector, face)``
    turns a vector into the result type; ``similarity(a, b)`` ranks results for the
    ``most-similar`` policy.
    """

    def __init__(self, name: str, detector: Detector | Callable[[], Detector], aligner: Aligner,
                 embedder: CropEmbedder, make: Callable[[np.ndarray, Face], E],
                 similarity: Callable[[E, E], float], spec: Any = None) -> None:
        self.name = name
        self._detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.make = make
        self.similarity = similarity
        self.spec = spec

    @property
    def detector(self) -> Detector:
        """The entry's detector, built on first use (embedding given crops needs none)."""
        if not hasattr(self._detector, "detect"):
            self._detector = self._detector()          # type: ignore[operator]
        return self._detector                          # type: ignore[return-value]

    # ------------------------------------------------------------------ the stages
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Usable faces in reading order (:func:`facegen.faces.detect.detect_faces`)."""
        return detect_faces(rgb, detector=self.detector)

    def detect_many(self, rgbs: Sequence[np.ndarray]) -> list[list[Face]]:
        """Usable faces of each image (empty when none), batched where the detector can."""
        return detect_faces_many(rgbs, self.detector)

    def align(self, rgb: np.ndarray, face: Face) -> AlignedFace:
        return self.aligner.align(rgb, face)

    def embed_batch(self, pairs: Sequence[tuple[np.ndarray, Face]]) -> list[E]:
        """Align and embed faces of any images, the crops in one embedder call."""
        if not pairs:
            return []
        crops = [self.aligner.align(rgb, f).crop for rgb, f in pairs]
        vectors = np.asarray(self.embedder.embed_crops(crops), dtype=np.float32)
        if vectors.shape[0] != len(pairs):
            raise InvalidArgumentError(f"encoder '{self.name}' gave {vectors.shape[0]} vectors for {len(pairs)} faces")
        return [self.make(v, f) for v, (_, f) in zip(vectors, pairs)]

    def embed_many(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[E]:
        return self.embed_batch([(rgb, f) for f in faces])

    def embed(self, rgb: np.ndarray, face: Face) -> E:
        return self.embed_batch([(rgb, face)])[0]

    # ------------------------------------------------------------------ the front door
    def analyze(self, rgb: np.ndarray, policy: str | int | FacePolicy = "largest",
                reference: E | None = None) -> list[E]:
        """The selected faces of ``rgb``, embedded (``most-similar`` needs ``reference``)."""
        faces = self.detect(rgb)
        pol = FacePolicy.parse(policy)
        if pol.kind == "most-similar":
            if reference is None:
                raise InvalidArgumentError("the most-similar face policy needs a reference embedding")
            embs = self.embed_many(rgb, faces)
            if not embs:
                select_faces(faces, pol)                  # the usual "no face" error
            return [max(embs, key=lambda e: self.similarity(reference, e))]
        return self.embed_many(rgb, select_faces(faces, pol))
