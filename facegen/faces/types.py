"""The face record shared by every detector backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in the coordinates of the (EXIF-upright) RGB image.

    bbox: ``(x1, y1, x2, y2)`` float32.
    kps: ``(5, 2)`` float32, the ArcFace 5 points in image order: left eye, right eye,
        nose tip, left mouth corner, right mouth corner (left = smaller x in a frontal face).
    score: detector confidence (backend-specific scale).
    landmarks68: optional ``(68, 2)`` iBUG-300W points.
    """

    bbox: np.ndarray
    kps: np.ndarray
    score: float
    landmarks68: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "kps": [[round(float(x), 2), round(float(y), 2)] for x, y in self.kps],
            "score": round(float(self.score), 4),
        }


@dataclass(frozen=True)
class AlignedFace:
    """A face cut out on a template: the RGB ``crop`` and the 2×3 ``matrix`` from image to crop
    pixels (``None`` where the backend aligns by its own rule, dlib's face chip)."""

    face: Face
    crop: np.ndarray
    matrix: np.ndarray | None
