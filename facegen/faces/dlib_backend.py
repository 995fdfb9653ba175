"""dlib face detection (HOG by default, MMOD CNN optional) with 68-point landmarks.

Real, pretrained and offline: the detector ships with dlib, the landmark predictor and the
CNN detector with ``face_recognition_models``.  Large photos are detected on a downscaled
copy (``max_side``) so a 12-megapixel photo stays fast; landmarks are then fitted on the
full-resolution image.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any
from pathlib import Path

import numpy as np

from facegen.errors import MissingDependencyError, ModelNotFoundError
from facegen.faces.types import AlignedFace, Face

logger = logging.getLogger(__name__)

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
RESNET_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"


def load_dlib():
    try:
        import dlib  # noqa: PLC0415
    except ImportError:  # pragma: no cover - dlib-bin is a core dependency
        raise MissingDependencyError("dlib-bin", feature="the dlib face backend") from None
    return dlib


@functools.lru_cache(maxsize=None)
def dlib_models_dir() -> Path:
    """The folder of face_recognition_models' .dat files, found without importing the package
    (its __init__ imports pkg_resources, which setuptools >= 81 removed)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError("dlib face models", [LANDMARKS_68, RESNET_DESCRIPTOR],
                                 hint="pip install face_recognition_models")
    return Path(spec.origin).parent / "models"


def dlib_model_path(name: str) -> Path:
    path = dlib_models_dir() / name
    if not path.is_file():
        raise ModelNotFoundError("dlib face models", [name], dlib_models_dir(),
                                 hint="reinstall face_recognition_models")
    return path


@functools.lru_cache(maxsize=None)
def _hog_detector():
    return load_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn_detector():
    return load_dlib().cnn_face_detection_model_v1(str(dlib_model_path(MMOD_DETECTOR)))


@functools.lru_cache(maxsize=None)
def shape_predictor(name: str = LANDMARKS_68):
    return load_dlib().shape_predictor(str(dlib_model_path(name)))


def kps5_from_68(pts: np.ndarray) -> np.ndarray:
    """The ArcFace 5 points from iBUG 68 points: eye centres, nose tip, mouth corners."""
    pts = np.asarray(pts, dtype=np.float32)
    return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]]).astype(np.float32)


class DlibDetector:
    """dlib HOG (or CNN) detector + 68-point predictor, behind the detector interface."""

    name = "dlib"

    def __init__(self, model: str = "hog", max_side: int = 1280, landmarks: bool = True) -> None:
        if model not in ("hog", "cnn"):
            from facegen.errors import InvalidArgumentError  # noqa: PLC0415
            raise InvalidArgumentError(f"dlib detector model must be 'hog' or 'cnn', got '{model}'")
        self.model = model
        self.max_side = int(max_side)
        self.landmarks = landmarks

    def _run(self, img: np.ndarray, upsample: int) -> list[tuple[tuple[float, float, float, float], float]]:
        if self.model == "cnn":
            dets = _cnn_detector()(img, upsample)
            return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
                    for d in dets]
        rects, scores, _ = _hog_detector().run(img, upsample, 0.0)
        return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]

    def _detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        import cv2  # noqa: PLC0415

        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        work = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)),
                                                   interpolation=cv2.INTER_AREA)
        work = np.ascontiguousarray(work)
        found = self._run(work, 0)
        if not found and max(work.shape[:2]) <= self.max_side // 2:
            found = self._run(work, 1)            # small photo: look for smaller faces
        pad = 0
        if not found:                             # face filling the frame (e.g. an aligned crop)
            pad = max(work.shape[:2]) // 4
            padded = np.ascontiguousarray(np.pad(work, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
            found = self._run(padded, 1 if max(padded.shape[:2]) <= self.max_side // 2 else 0)
        out = []
        for (x1, y1, x2, y2), score in found:
            box = (np.array([x1, y1, x2, y2], dtype=np.float32) - pad) / scale
            box[[0, 2]] = box[[0, 2]].clip(0, w - 1)
            box[[1, 3]] = box[[1, 3]].clip(0, h - 1)
            out.append((box, score))
        logger.debug("dlib %s: %d face(s) at scale %.3f", self.model, len(out), scale)
        return out

    def detect(self, rgb: np.ndarray) -> list[Face]:
        dlib = load_dlib()
        rgb = np.ascontiguousarray(rgb)
        predictor = shape_predictor(LANDMARKS_68)
        faces = []
        for box, score in self._detect_boxes(rgb):
            rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
            shape = predictor(rgb, rect)
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            faces.append(Face(bbox=box, kps=kps5_from_68(pts), score=score, landmarks68=pts,
                              extra={"detector": f"dlib-{self.model}"}))
        return faces


class DlibChipAligner:
    """dlib's own alignment for its descriptor: the 5-point predictor on the face box, then
    ``get_face_chip`` (``size`` px, ``padding``) — the chip ``compute_face_descriptor`` cuts
    itself, so the descriptor of this chip equals dlib's on the whole image bit for bit."""

    def __init__(self, size: int = 150, padding: float = 0.25) -> None:
        self.size = int(size)
        self.padding = float(padding)

    def align(self, rgb: np.ndarray, face: Any) -> Any:
        dlib = load_dlib()
        rgb = np.ascontiguousarray(rgb)
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        shape = shape_predictor(LANDMARKS_5)(rgb, dlib.rectangle(x1, y1, x2, y2))
        chip = dlib.get_face_chip(rgb, shape, size=self.size, padding=self.padding)
        return AlignedFace(face, np.asarray(chip, dtype=np.uint8), None)
