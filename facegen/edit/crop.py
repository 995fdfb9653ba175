"""Crop an aligned face out of a photo, keeping the affine matrix for paste-back."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facegen.errors import BadImageError, InvalidArgumentError
from facegen.faces.align import TEMPLATES, TemplateName, align_matrix, template_points, transform_points
from facegen.faces.types import Face

__all__ = ["FaceCrop", "crop_face", "crop_template_points"]


@dataclass(frozen=True, eq=False)
class FaceCrop:
    """An aligned face crop and the transform that produced it.

    crop: ``(size, size, 3)`` uint8 RGB.
    M: ``(2, 3)`` float64 affine taking image coordinates to crop coordinates
        (``paste_back`` uses its inverse).
    size: crop side in pixels.
    template: ``'ffhq'`` or ``'arcface'``.
    margin: extra context on each side, as a fraction of the template crop.
    image_hw: ``(height, width)`` of the image the crop came from.
    """

    crop: np.ndarray
    M: np.ndarray
    size: int
    template: str
    margin: float = 0.0
    image_hw: tuple[int, int] = (0, 0)

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel (> 1: the face was upsampled into the crop).

        Below 1 the crop is lower resolution than the face in the photo, so pasting an
        unchanged crop back softens the face; choose ``size`` ≥ the face's size for edits
        that must keep detail.
        """
        return float(math.sqrt(abs(np.linalg.det(self.M[:, :2]))))


def _check_image(image_rgb: np.ndarray) -> None:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 \
            or image_rgb.shape[2] != 3:
        desc = f"{image_rgb.dtype} array of shape {image_rgb.shape}" if isinstance(image_rgb, np.ndarray) \
            else type(image_rgb).__name__
        raise BadImageError(f"expected an RGB uint8 image of shape (H, W, 3), got a {desc}")
    if image_rgb.shape[0] < 2 or image_rgb.shape[1] < 2:
        raise BadImageError(f"image of shape {image_rgb.shape} is too small to crop a face from")


def crop_template_points(size: int, template: TemplateName = "ffhq", margin: float = 0.0) -> np.ndarray:
    """Where the 5 face points land inside a crop made by :func:`crop_face` (``(5, 2)`` float32)."""
    ref = template_points(size, template)
    return transform_points(ref, align_matrix(ref, size, template, margin))


def crop_face(image_rgb: np.ndarray, face: Face, size: int = 512, template: TemplateName = "ffhq",
              margin: float = 0.0, border: int = cv2.BORDER_REPLICATE,
              interpolation: int = cv2.INTER_CUBIC) -> FaceCrop:
    """Warp ``face`` onto the ``template`` at ``size``×``size`` and return the crop with its matrix.

    ``template='ffhq'`` is the FFHQ-512 layout of restoration models (facexlib/CodeFormer);
    ``'arcface'`` the insightface layout (sizes must be multiples of 112 or 128). ``margin``
    shows that much more context on each side (0.25 → 25 %) with the face kept centred.
    Pixels the crop takes from outside the photo repeat its edge (``border``), which suits
    generators better than black; they map back outside the photo, so paste-back never
    uses them. Resampling is bicubic (half the round-trip error of bilinear); when the face
    is more than 1.5× larger in the photo than in the crop, the face's region is first
    reduced with area averaging so the crop does not alias.
    """
    _check_image(image_rgb)
    if template not in TEMPLATES:
        raise InvalidArgumentError(f"unknown template '{template}'; choose one of: {', '.join(TEMPLATES)}")
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise InvalidArgumentError(f"crop size must be an integer ≥ 16, got {size!r}")
    if not 0.0 <= margin <= 4.0:
        raise InvalidArgumentError(f"margin must be in [0, 4], got {margin}")
    size = int(size)
    m = align_matrix(face.kps, size, template, margin)
    crop = _resample(image_rgb, m, size, border, interpolation)
    return FaceCrop(crop=np.ascontiguousarray(crop), M=m, size=size,
                    template=template, margin=float(margin),
                    image_hw=(int(image_rgb.shape[0]), int(image_rgb.shape[1])))


def _resample(image_rgb: np.ndarray, m: np.ndarray, size: int, border: int, interpolation: int) -> np.ndarray:
    """``cv2.warpAffine(image, m, (size, size))``, reducing the face's region by area first
    when the crop is much smaller than the face (downscale factor > 1.5)."""
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if scale < 1.0 / 1.5:
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
        pts = corners @ inv[:, :2].T + inv[:, 2]
        h, w = image_rgb.shape[:2]
        x0 = min(max(int(math.floor(pts[:, 0].min())) - 4, 0), w - 1)
        y0 = min(max(int(math.floor(pts[:, 1].min())) - 4, 0), h - 1)
        x1 = max(min(int(math.ceil(pts[:, 0].max())) + 5, w), x0 + 1)
        y1 = max(min(int(math.ceil(pts[:, 1].max())) + 5, h), y0 + 1)
        roi = image_rgb[y0:y1, x0:x1]
        nw = max(int(round((x1 - x0) * scale)), 1)
        nh = max(int(round((y1 - y0) * scale)), 1)
        small = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = nw / (x1 - x0), nh / (y1 - y0)
        # small-image coords: x' = (x - x0 + 0.5)·sx − 0.5; so image = (x' + 0.5)/sx − 0.5 + x0
        to_image = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + x0], [0, 1 / sy, 0.5 / sy - 0.5 + y0], [0, 0, 1.0]])
        m_small = (np.vstack([m, [0, 0, 1]]) @ to_image)[:2]
        return cv2.warpAffine(small, m_small, (size, size), flags=interpolation, borderMode=border)
    return cv2.warpAffine(image_rgb, m, (size, size), flags=interpolation, borderMode=border)
