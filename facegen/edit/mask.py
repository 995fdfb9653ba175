"""Soft face masks (float32 alpha in [0, 1]) for edit tasks, in image or crop coordinates.

Kinds:

* **landmark hull** — the convex hull of the 68 iBUG points plus a forehead band (the brow
  points lifted along the face's up axis by a fraction of the brow-to-nose-base height: the
  classic "facial thirds" mirror of the nose base over the brow line);
* **ellipse** — without 68 points, an ellipse fitted to the 5 keypoints (defined in the
  ArcFace template frame and mapped through the face's similarity transform, so it follows
  roll and scale);
* **box** — insightface ``inswapper`` style: the whole crop eroded by ``max(size//10, 10)``
  and blurred with a ``2·max(size//20, 5)+1`` kernel;
* **region** — from a face-parsing model *when one is installed*: facegen ships none, so
  pass ``region_mask_fn`` (crop RGB uint8 → (size, size) mask in [0, 1], e.g. the union of
  BiSeNet skin/brow/eye/nose/lip classes) to :func:`face_mask`.

Every mask goes through :func:`soften_mask`: dilation (negative = erosion) then Gaussian
feathering. Feathering is a Gaussian of σ = feather_px / 3 truncated at feather_px, so alpha
is exactly 0 further than ``feather_px`` outside the dilated edge and exactly 1 further than
``feather_px`` inside it; values below 1/512 are snapped to 0 and above 1 − 1/512 to 1 (a
difference smaller than half a grey level after blending).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import cv2
import numpy as np

from facegen.errors import InvalidArgumentError
from facegen.faces.align import TemplateName, estimate_norm, invert_affine, transform_points
from facegen.faces.types import Face

from .crop import FaceCrop, crop_template_points

__all__ = ["RegionMaskFn", "MaskKind", "soften_mask", "landmark_hull_mask", "ellipse_mask", "crop_mask",
           "box_mask", "face_mask", "hull_points", "mouth_mask"]

#: A face-parsing hook: aligned crop (RGB uint8, ``(S, S, 3)``) → ``(S, S)`` mask in [0, 1].
RegionMaskFn = Callable[[np.ndarray], np.ndarray]
MaskKind = Literal["auto", "hull", "ellipse", "box", "region"]

_SNAP = 1.0 / 512.0
#: Ellipse (centre x, centre y, semi-axis x, semi-axis y) in the ArcFace 112×112 frame,
#: calibrated on dlib 68-point hulls (+ forehead band) of frontal photos.
_ELLIPSE_112 = (56.0, 72.0, 41.0, 50.0)
_BROWS = slice(17, 27)


def _check_hw(shape_hw: tuple[int, int]) -> tuple[int, int]:
    if len(shape_hw) < 2 or int(shape_hw[0]) < 1 or int(shape_hw[1]) < 1:
        raise InvalidArgumentError(f"mask shape must be (height, width) with positive sides, got {shape_hw}")
    return int(shape_hw[0]), int(shape_hw[1])


def soften_mask(mask: np.ndarray, dilate_px: float = 0.0, feather_px: float = 0.0) -> np.ndarray:
    """Dilate (``dilate_px`` > 0) or erode (< 0) a mask, then feather its edge with a Gaussian.

    Accepts bool, uint8 (0–255) or float masks; returns float32 in [0, 1] of the same shape.
    Only the bounding box of the non-zero pixels (plus the dilation and feather reach) is
    processed, so large image-sized masks stay cheap.
    """
    if mask.ndim != 2:
        raise InvalidArgumentError(f"a mask must be 2-D (H, W), got shape {mask.shape}")
    if feather_px < 0:
        raise InvalidArgumentError(f"feather_px must be ≥ 0, got {feather_px}")
    m = mask.astype(np.float32)
    if mask.dtype == np.uint8:
        m /= 255.0
    np.clip(m, 0.0, 1.0, out=m)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return m
    d = int(math.ceil(abs(dilate_px)))
    f = int(math.ceil(feather_px))
    pad = d + f + 2
    h, w = m.shape
    y0, y1 = max(int(rows[0]) - pad, 0), min(int(rows[-1]) + pad + 1, h)
    x0, x1 = max(int(cols[0]) - pad, 0), min(int(cols[-1]) + pad + 1, w)
    roi = m[y0:y1, x0:x1]
    if d:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1))
        op = cv2.dilate if dilate_px > 0 else cv2.erode
        # border = 0 so that erosion also eats in from the frame edge (outside counts as background)
        roi = op(roi, k, borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
    if f:
        roi = cv2.GaussianBlur(roi, (2 * f + 1, 2 * f + 1), sigmaX=f / 3.0, sigmaY=f / 3.0,
                               borderType=cv2.BORDER_CONSTANT)
    roi = np.clip(roi, 0.0, 1.0)
    roi[roi < _SNAP] = 0.0
    roi[roi > 1.0 - _SNAP] = 1.0
    out = np.zeros_like(m)
    out[y0:y1, x0:x1] = roi
    return out


def _polygon_mask(polygon: np.ndarray, shape_hw: tuple[int, int], dilate_px: float,
                  feather_px: float) -> np.ndarray:
    """Fill a polygon (sub-pixel, anti-aliased) and soften it.

    Works in the polygon's own frame (its bounding box plus the dilation and feather reach,
    which may extend past the image, so erosion and blur see the true shape rather than a
    cut at the border), then copies the part inside the image: image-sized masks of 12-MP
    photos stay cheap.
    """
    h, w = shape_hw
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    out = np.zeros((h, w), dtype=np.float32)
    pad = int(math.ceil(abs(dilate_px))) + int(math.ceil(feather_px)) + 3
    fx0, fy0 = int(math.floor(pts[:, 0].min())) - pad, int(math.floor(pts[:, 1].min())) - pad
    fx1, fy1 = int(math.ceil(pts[:, 0].max())) + pad + 1, int(math.ceil(pts[:, 1].max())) + pad + 1
    x0, y0, x1, y1 = max(fx0, 0), max(fy0, 0), min(fx1, w), min(fy1, h)
    if x1 <= x0 or y1 <= y0:
        return out
    frame = np.zeros((fy1 - fy0, fx1 - fx0), dtype=np.uint8)
    fixed = np.round((pts - [fx0, fy0]) * 16.0).astype(np.int32).reshape(-1, 1, 2)  # 4 fractional bits
    cv2.fillPoly(frame, [fixed], 255, lineType=cv2.LINE_AA, shift=4)
    soft = soften_mask(frame, dilate_px, feather_px)
    out[y0:y1, x0:x1] = soft[y0 - fy0:y1 - fy0, x0 - fx0:x1 - fx0]
    return out


def _up_axis(landmarks68: np.ndarray) -> np.ndarray:
    """Unit vector pointing from the mouth towards the forehead, perpendicular to the eye line."""
    eye_l = landmarks68[36:42].mean(0)
    eye_r = landmarks68[42:48].mean(0)
    mouth = landmarks68[48:68].mean(0)
    v = eye_r - eye_l
    n = np.array([v[1], -v[0]], dtype=np.float64)
    if np.dot(n, mouth - (eye_l + eye_r) / 2.0) > 0:
        n = -n
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else np.array([0.0, -1.0])


def hull_points(landmarks68: np.ndarray, forehead: float = 0.5) -> np.ndarray:
    """The 68 points plus a forehead band: the 10 brow points lifted by ``forehead`` × the
    brow-to-nose-base height along the face's up axis (facial thirds: 1.0 ≈ hairline)."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise InvalidArgumentError(f"landmarks68 must have shape (68, 2), got {lm.shape}")
    if forehead <= 0:
        return lm
    up = _up_axis(lm)
    brows = lm[_BROWS]
    height = float(np.dot(brows.mean(0) - lm[33], up))
    lifted = brows + up * max(height, 0.0) * forehead
    return np.vstack([lm, lifted])


def landmark_hull_mask(face: Face, shape_hw: tuple[int, int], M: np.ndarray | None = None, *,
                       dilate_px: float = 0.0, feather_px: float = 0.0, forehead: float = 0.5) -> np.ndarray:
    """Convex hull of the face's 68 landmarks (+ forehead band) as a soft mask.

    In image coordinates by default (``shape_hw`` = the image's height, width); with ``M``
    (a crop's 2×3 matrix, e.g. ``FaceCrop.M``) the points are mapped into the crop and
    ``shape_hw`` is the crop's. Faces without ``landmarks68`` fall back to
    :func:`ellipse_mask` on the 5 keypoints.
    """
    hw = _check_hw(shape_hw)
    if face.landmarks68 is None:
        return ellipse_mask(face.kps, hw, M, dilate_px=dilate_px, feather_px=feather_px)
    pts = hull_points(face.landmarks68, forehead)
    if M is not None:
        pts = transform_points(pts, M)
    hull = cv2.convexHull(np.asarray(pts, dtype=np.float32)).reshape(-1, 2)
    return _polygon_mask(hull, hw, dilate_px, feather_px)


def ellipse_mask(kps: np.ndarray, shape_hw: tuple[int, int], M: np.ndarray | None = None, *,
                 dilate_px: float = 0.0, feather_px: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """An ellipse around the face fitted to its 5 keypoints (brows to chin, cheek to cheek).

    The ellipse is fixed in the ArcFace template frame and mapped to the image through the
    similarity transform of ``kps`` (then through ``M`` if given), so it follows the face's
    position, size and roll. ``scale`` grows or shrinks it about its centre.
    """
    hw = _check_hw(shape_hw)
    cx, cy, ax, ay = _ELLIPSE_112
    t = np.linspace(0.0, 2.0 * np.pi, 96, endpoint=False)
    ring = np.stack([cx + scale * ax * np.cos(t), cy + scale * ay * np.sin(t)], axis=1)
    to_template = estimate_norm(np.asarray(kps, dtype=np.float32), 112, "arcface")
    pts = transform_points(ring, invert_affine(to_template))
    if M is not None:
        pts = transform_points(pts, M)
    return _polygon_mask(pts, hw, dilate_px, feather_px)


#: The mouth in the ArcFace 112×112 frame, for faces without 68 points: the mouth-corner keypoints
#: (41.5, 92.4) and (70.7, 92.2) widened by a quarter, lips from the nose's base to the chin's crease.
_MOUTH_112 = (56.1, 93.0, 19.0, 10.0)
_LIPS = slice(48, 60)


def mouth_mask(face: Face, shape_hw: tuple[int, int], *, feather_px: float | None = None) -> np.ndarray:
    """The face's mouth (lips and what is between them) as a soft mask in image coordinates:
    the outer-lip polygon of the 68 points (48–59) when the face has them, else an ellipse
    between the 5-keypoint mouth corners, placed in the ArcFace template frame like
    :func:`ellipse_mask` (it follows position, size and roll).  Fully on over the mouth grown by
    a twentieth of its width, fading out over the next ``feather_px`` (default: an eighth of its
    width), so it stops short of the nose."""
    hw = _check_hw(shape_hw)
    kps = np.asarray(face.kps, dtype=np.float32)
    width = float(np.linalg.norm(kps[4] - kps[3]))
    feather = max(width / 8.0, 1.0) if feather_px is None else float(feather_px)
    if face.landmarks68 is not None:
        lips = np.asarray(face.landmarks68, dtype=np.float64)[_LIPS]
        return _polygon_mask(cv2.convexHull(lips.astype(np.float32)).reshape(-1, 2), hw, width / 20.0 + feather,
                             feather)
    cx, cy, ax, ay = _MOUTH_112
    t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
    ring = np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)
    pts = transform_points(ring, invert_affine(estimate_norm(kps, 112, "arcface")))
    return _polygon_mask(pts, hw, width / 20.0 + feather, feather)


def crop_mask(size: int, template: TemplateName = "ffhq", margin: float = 0.0, *,
              dilate_px: float | None = None, feather_px: float | None = None) -> np.ndarray:
    """The default soft face mask of a crop made by ``crop_face(size, template, margin)``:
    the keypoint ellipse placed at the template's own points (no face needed)."""
    dilate_px = size / 32.0 if dilate_px is None else dilate_px
    feather_px = size / 20.0 if feather_px is None else feather_px
    return ellipse_mask(crop_template_points(size, template, margin), (size, size),
                        dilate_px=dilate_px, feather_px=feather_px)


def box_mask(size: int) -> np.ndarray:
    """insightface ``inswapper`` paste-back mask in crop coordinates: the full crop eroded with
    a ``k = max(size//10, 10)`` square, then Gaussian-blurred with a ``2·max(size//20, 5)+1``
    kernel (σ from the kernel size, as ``cv2.GaussianBlur(.., 0)``); the crop's 1-px frame is 0."""
    if size < 16:
        raise InvalidArgumentError(f"box mask size must be ≥ 16, got {size}")
    k_erode = max(size // 10, 10)
    k_blur = max(size // 20, 5)
    m = np.ones((size, size), dtype=np.float32)
    m = cv2.erode(m, np.ones((k_erode, k_erode), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
    m = cv2.GaussianBlur(m, (2 * k_blur + 1, 2 * k_blur + 1), 0, borderType=cv2.BORDER_CONSTANT)
    m = np.clip(m, 0.0, 1.0)
    m[m < _SNAP] = 0.0
    m[m > 1.0 - _SNAP] = 1.0
    m[[0, -1], :] = 0.0  # the blur tail reaches the frame (≈ 0.002): keep the crop's edge out
    m[:, [0, -1]] = 0.0
    return m


def face_mask(face_crop: FaceCrop, face: Face | None = None, kind: MaskKind = "auto", *,
              region_mask_fn: RegionMaskFn | None = None, dilate_px: float | None = None,
              feather_px: float | None = None, forehead: float = 0.5) -> np.ndarray:
    """The soft mask of the face in ``face_crop``'s coordinates, ready for ``paste_back``.

    ``kind='auto'`` picks ``'region'`` when ``region_mask_fn`` is given (a face-parsing model
    the caller has installed), else ``'hull'`` when ``face.landmarks68`` is known, else
    ``'ellipse'`` (5 keypoints; the template's when ``face`` is None). Defaults scale with
    the crop: dilation ``size/32``, feather ``size/20`` (16 and 25 px at 512).
    """
    size = face_crop.size
    dilate_px = size / 32.0 if dilate_px is None else dilate_px
    feather_px = size / 20.0 if feather_px is None else feather_px
    if kind == "auto":
        if region_mask_fn is not None:
            kind = "region"
        elif face is not None and face.landmarks68 is not None:
            kind = "hull"
        else:
            kind = "ellipse"
    if kind == "region":
        if region_mask_fn is None:
            raise InvalidArgumentError("kind='region' needs region_mask_fn (a face-parsing model); facegen "
                                       "ships none — use kind='hull' or 'ellipse', or pass your parser")
        raw = np.asarray(region_mask_fn(face_crop.crop))
        if raw.shape != (size, size):
            raise InvalidArgumentError(f"region_mask_fn returned shape {raw.shape}, expected ({size}, {size})")
        if raw.dtype != np.uint8 and raw.dtype != bool and (np.nanmin(raw) < 0 or np.nanmax(raw) > 1):
            raise InvalidArgumentError("region_mask_fn must return a mask in [0, 1] (or uint8 0–255 / bool)")
        return soften_mask(raw, dilate_px, feather_px)
    if kind == "hull":
        if face is None or face.landmarks68 is None:
            raise InvalidArgumentError("kind='hull' needs a face with 68 landmarks; use kind='ellipse'")
        return landmark_hull_mask(face, (size, size), face_crop.M, dilate_px=dilate_px, feather_px=feather_px,
                                  forehead=forehead)
    if kind == "ellipse":
        if face is None:
            template: TemplateName = "arcface" if face_crop.template == "arcface" else "ffhq"
            return crop_mask(size, template, face_crop.margin, dilate_px=dilate_px, feather_px=feather_px)
        return ellipse_mask(face.kps, (size, size), face_crop.M, dilate_px=dilate_px, feather_px=feather_px)
    if kind == "box":
        return box_mask(size)
    raise InvalidArgumentError(f"unknown mask kind '{kind}'; choose auto, hull, ellipse, box or region")
