"""One detection interface over the backends, and the face selection policy."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from facegen.errors import FaceTooSmallError, InvalidArgumentError, NoFaceError
from facegen.faces.types import Face

logger = logging.getLogger(__name__)

#: faces narrower than this (pixels) cannot be aligned and embedded reliably
MIN_FACE_SIZE = 24


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]: ...


def _make_dlib(**kw: Any) -> Detector:
    from facegen.faces.dlib_backend import DlibDetector  # noqa: PLC0415
    allowed = {k: v for k, v in kw.items() if k in ("model", "max_side")}
    return DlibDetector(**allowed)


def _make_insightface(**kw: Any) -> Detector:
    from facegen.faces.insightface_backend import SCRFDDetector  # noqa: PLC0415
    allowed = {k: v for k, v in kw.items()
               if k in ("pack", "access", "det_size", "det_thresh", "providers", "session_factory")}
    return SCRFDDetector(**allowed)


#: backend name -> factory; the data-driven registry of detectors
DETECTORS: dict[str, Callable[..., Detector]] = {"dlib": _make_dlib, "insightface": _make_insightface}


@functools.lru_cache(maxsize=8)
def _cached_detector(backend: str, frozen: tuple[tuple[str, Any], ...]) -> Detector:
    return DETECTORS[backend](**dict(frozen))


def get_detector(backend: str = "dlib", **options: Any) -> Detector:
    """A (cached) detector. Options: dlib: model ('hog'|'cnn'), max_side; insightface: pack,
    access (a :class:`facegen.paths.ModelAccess`), det_size, det_thresh, providers."""
    if backend not in DETECTORS:
        raise InvalidArgumentError(f"unknown face detector '{backend}'; choose one of: {', '.join(DETECTORS)}")
    if "session_factory" in options:                     # fakes are never cached
        return DETECTORS[backend](**options)
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else (str(v) if isinstance(v, Path) else v))
                          for k, v in options.items()))
    return _cached_detector(backend, frozen)


def sort_faces(faces: Sequence[Face]) -> list[Face]:
    """Deterministic reading order: left to right, then top to bottom (by box centre)."""
    return sorted(faces, key=lambda f: (round(float(f.bbox[0] + f.bbox[2]) / 2, 1),
                                        round(float(f.bbox[1] + f.bbox[3]) / 2, 1)))


def detect_faces_many(rgbs: Sequence[np.ndarray], detector: Detector, min_face_size: int = MIN_FACE_SIZE
                      ) -> list[list[Face]]:
    """Usable faces of each image in reading order (empty: none, or all too small), batched on
    the detector when it can (``detect_batch``: SCRFD exports with a dynamic batch)."""
    batch = getattr(detector, "detect_batch", None)
    found = batch(list(rgbs)) if batch is not None else [detector.detect(rgb) for rgb in rgbs]
    return [sort_faces(usable_faces(faces, min_face_size)) for faces in found]


def usable_faces(faces: Sequence[Face], min_face_size: int = MIN_FACE_SIZE) -> list[Face]:
    """The faces at least ``min_face_size`` pixels wide and tall."""
    return [f for f in faces if min(f.width, f.height) >= min_face_size]


def detect_faces(rgb: np.ndarray, backend: str = "dlib", min_face_size: int = MIN_FACE_SIZE,
                 detector: Detector | None = None, **options: Any) -> list[Face]:
    """All faces of an RGB uint8 image in reading order (see :func:`sort_faces`).

    Raises NoFaceError when there is none and FaceTooSmallError when every face found is
    narrower than ``min_face_size`` pixels; smaller faces beside usable ones are dropped.
    """
    det = detector or get_detector(backend, **options)
    faces = det.detect(rgb)
    if not faces:
        raise NoFaceError(f"no face found in the image ({rgb.shape[1]}×{rgb.shape[0]}, detector {det.name})")
    usable = usable_faces(faces, min_face_size)
    if not usable:
        biggest = max(min(f.width, f.height) for f in faces)
        raise FaceTooSmallError(
            f"the face found is too small to use ({biggest:.0f} px; at least {min_face_size} px needed): "
            "use a larger or closer photo")
    return sort_faces(usable)


@dataclass(frozen=True)
class FacePolicy:
    """Which face(s) to use: ``largest`` (default), ``all``, ``index`` N (reading order), or
    ``most-similar`` to a reference embedding."""

    kind: str = "largest"
    index: int = 0
    reference: Any = None  # IDEmbedding for most-similar

    @classmethod
    def parse(cls, text: "str | int | FacePolicy") -> "FacePolicy":
        if isinstance(text, FacePolicy):
            return text
        if isinstance(text, int):
            return cls("index", index=text)
        t = str(text).strip().lower()
        if t in ("largest", "all", "most-similar"):
            return cls(t)
        m = re.fullmatch(r"(?:index[: ]?)?(\d+)", t)
        if m:
            return cls("index", index=int(m.group(1)))
        raise InvalidArgumentError(
            f"unknown face policy '{text}': use largest, all, an index N, or most-similar (with a reference)")


def select_faces(faces: Sequence[Face], policy: "str | int | FacePolicy" = "largest",
                 similarity: Callable[[Face], float] | None = None) -> list[Face]:
    """Apply a selection policy to detected faces (already in reading order).

    ``most-similar`` needs ``similarity(face) -> float`` (higher = more similar to the reference).
    """
    pol = FacePolicy.parse(policy)
    faces = list(faces)
    if not faces:
        raise NoFaceError("no face to select from")
    if pol.kind == "all":
        return faces
    if pol.kind == "largest":
        best = max(range(len(faces)), key=lambda i: (faces[i].area, -i))
        return [faces[best]]
    if pol.kind == "index":
        if not 0 <= pol.index < len(faces):
            raise InvalidArgumentError(
                f"face index {pol.index} is out of range: {len(faces)} face(s) found (indices 0..{len(faces) - 1}, left to right)")
        return [faces[pol.index]]
    if pol.kind == "most-similar":
        if similarity is None:
            raise InvalidArgumentError("the most-similar face policy needs a reference face (--reference IMAGE)")
        scores = [similarity(f) for f in faces]
        return [faces[int(np.argmax(scores))]]
    raise InvalidArgumentError(f"unknown face policy '{pol.kind}'")
