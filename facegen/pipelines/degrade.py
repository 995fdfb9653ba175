"""Synthetic face degradation (for benchmarks) and a no-reference degradation estimate
(to adapt restoration strength).

``degrade`` follows the usual blind-face-restoration recipe (GFPGAN/CodeFormer training
data): Gaussian blur → downscale → Gaussian noise → JPEG → upscale back to the input size.

``estimate_degradation`` maps three no-reference measures to one score in [0, 1]
(0 = clean, 1 = heavily degraded). With a face, they are measured on its box enlarged by
20 %, else on the whole image. Calibrated on the photos of ../shared/faces:

* **blur** — Crété-Roffet et al. (2007) re-blur metric ``B`` ∈ [0, 1] (how little of the
  local variation a further 9-tap box blur removes), on the region resized to 256 px on the
  long side, so that it is relative to the face's size (a small face upsampled is blurry).
  Sharp photos ≈ 0.35–0.45; Gaussian σ = 1 px ≈ 0.5, σ = 2 ≈ 0.65, σ = 4 ≈ 0.8.
  ``blur = clip((B − 0.35) / 0.40)``.
* **noise** — luminance noise σ in grey levels at native resolution: Immerkær (1996) 3×3
  operator with a median instead of a mean (robust to edges), ``σ ≈ 1.4826·median|I∗N|/6``.
  Clean photos ≈ 0.5–2; independent RGB noise of σ = 10 reads ≈ 6.8 (luma averages the
  channels). ``noise = clip((σ − 2) / 12)``.
* **JPEG blockiness** — mean |luminance step| across the 8×8 grid lines over the mean step
  elsewhere, ``R``, with the grid phase of the image as decoded (only meaningful before any
  resampling). No JPEG ≈ 1.0, good-quality JPEG sources 1.1–1.3, quality 50 ≈ 1.5–1.75,
  quality 20 > 2. ``blocks = clip((R − 1.15) / 0.85)``.

Combined as a probabilistic OR: ``score = 1 − (1 − blur)(1 − noise)(1 − blocks)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from facegen.errors import BadImageError, InvalidArgumentError
from facegen.faces.types import Face

__all__ = ["DegradationEstimate", "degrade", "degrade_level", "estimate_degradation", "degradation_report"]

logger = logging.getLogger(__name__)

_WORK_SIZE = 256


def _check_rgb(image_rgb: np.ndarray) -> None:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 \
            or image_rgb.shape[2] != 3:
        got = f"{image_rgb.dtype} {image_rgb.shape}" if isinstance(image_rgb, np.ndarray) else type(image_rgb).__name__
        raise BadImageError(f"expected an RGB uint8 image (H, W, 3), got {got}")
    if min(image_rgb.shape[:2]) < 8:
        raise BadImageError(f"image of shape {image_rgb.shape} is too small (needs at least 8×8 pixels)")


def degrade(image_rgb: np.ndarray, *, blur_sigma: float = 0.0, noise_sigma: float = 0.0,
            jpeg_quality: int | None = None, downscale: float = 1.0, seed: int = 0) -> np.ndarray:
    """Degrade a photo like a low-quality face picture; same size and dtype out as in.

    blur_sigma: Gaussian blur σ in pixels (0 = none).
    downscale: reduce by this factor (≥ 1; e.g. 4 → a quarter of the width) and scale back
        up bilinearly at the end (1 = none).
    noise_sigma: additive Gaussian noise σ in grey levels, drawn from ``seed`` (0 = none).
    jpeg_quality: JPEG round trip at this quality 1–100 (None = none).
    Deterministic: the same arguments always give the same pixels.
    """
    _check_rgb(image_rgb)
    if blur_sigma < 0 or noise_sigma < 0:
        raise InvalidArgumentError(f"blur_sigma and noise_sigma must be ≥ 0, got {blur_sigma}, {noise_sigma}")
    if not downscale >= 1.0 or not math.isfinite(downscale):
        raise InvalidArgumentError(f"downscale must be a factor ≥ 1, got {downscale}")
    if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 100:
        raise InvalidArgumentError(f"jpeg_quality must be in 1–100 (or None), got {jpeg_quality}")
    h, w = image_rgb.shape[:2]
    img = image_rgb
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=blur_sigma, sigmaY=blur_sigma, borderType=cv2.BORDER_REFLECT_101)
    if downscale > 1.0:
        sw, sh = max(int(round(w / downscale)), 1), max(int(round(h / downscale)), 1)
        img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR)
    if noise_sigma > 0:
        rng = np.random.default_rng(seed)
        noisy = img.astype(np.float32) + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_sigma)
        img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise BadImageError("JPEG encoding failed while degrading the image")
        img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img) if img is not image_rgb else img.copy()


def degrade_level(image_rgb: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """One-knob degradation for benchmarks: ``level`` in [0, 1] scales every component
    (blur σ up to 4 px, downscale up to 8×, noise σ up to 20, JPEG quality down to 10)."""
    if not 0.0 <= level <= 1.0:
        raise InvalidArgumentError(f"degradation level must be in [0, 1], got {level}")
    if level == 0.0:
        return image_rgb.copy()
    return degrade(image_rgb, blur_sigma=4.0 * level, downscale=1.0 + 7.0 * level, noise_sigma=20.0 * level,
                   jpeg_quality=int(round(95 - 85 * level)), seed=seed)


@dataclass(frozen=True)
class DegradationEstimate:
    """The components of :func:`estimate_degradation` (raw measures and their [0, 1] scores)."""

    score: float
    blur: float
    noise: float
    blocks: float
    reblur_metric: float
    noise_sigma: float
    blockiness_ratio: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def _gray(image_rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _reblur_metric(gray: np.ndarray) -> float:
    """Crété-Roffet 2007 no-reference blur measure in [0, 1] (higher = blurrier)."""
    values = []
    for axis in (0, 1):
        # blur along the direction the differences are taken in (cv2 ksize is (width, height))
        blurred = cv2.blur(gray, (1, 9) if axis == 0 else (9, 1), borderType=cv2.BORDER_REFLECT_101)
        d_f = np.abs(np.diff(gray, axis=axis))
        d_b = np.abs(np.diff(blurred, axis=axis))
        s_f = float(d_f.sum())
        if s_f <= 1e-6:
            values.append(1.0)
            continue
        s_v = float(np.maximum(d_f - d_b, 0.0).sum())
        values.append((s_f - s_v) / s_f)
    return max(values)


def _noise_sigma(gray: np.ndarray) -> float:
    """Immerkær (1996) noise σ with a median instead of a mean (robust to edges)."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    resp = cv2.filter2D(gray, -1, kernel, borderType=cv2.BORDER_REFLECT_101)[1:-1, 1:-1]
    return float(1.4826 * np.median(np.abs(resp)) / 6.0)


def _blockiness(gray: np.ndarray, origin: tuple[int, int] = (0, 0)) -> float:
    """Mean |step| across 8×8 JPEG block boundaries over the mean |step| inside blocks
    (≈ 1: no blocking). ``origin`` = (y, x) of ``gray`` in the decoded image, for the grid phase."""
    ratios = []
    for axis in (0, 1):
        d = np.abs(np.diff(gray, axis=axis))
        n = d.shape[axis]
        if n < 16:
            continue
        idx = np.arange(n)
        at_edge = ((idx + origin[axis]) % 8) == 7
        boundary = d.take(idx[at_edge], axis=axis).mean()
        inside = d.take(idx[~at_edge], axis=axis).mean()
        ratios.append(boundary / inside if inside > 1e-6 else 1.0)
    return float(np.mean(ratios)) if ratios else 1.0


def _region(image_rgb: np.ndarray, face: Face | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The face's box enlarged by 20 % (whole image without a face) and its (y, x) origin."""
    if face is None:
        return image_rgb, (0, 0)
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, 0.6 * max(x2 - x1, y2 - y1)
    h, w = image_rgb.shape[:2]
    xa, xb = max(int(cx - half), 0), min(int(math.ceil(cx + half)), w)
    ya, yb = max(int(cy - half), 0), min(int(math.ceil(cy + half)), h)
    if xb - xa < 16 or yb - ya < 16:
        return image_rgb, (0, 0)
    return image_rgb[ya:yb, xa:xb], (ya, xa)


def degradation_report(image_rgb: np.ndarray, face: Face | None = None) -> DegradationEstimate:
    """All components of :func:`estimate_degradation` (see the module docstring for the mapping)."""
    _check_rgb(image_rgb)
    region, origin = _region(image_rgb, face)
    gray = _gray(region)
    scale = _WORK_SIZE / max(gray.shape)
    size = (max(int(round(gray.shape[1] * scale)), 8), max(int(round(gray.shape[0] * scale)), 8))
    work = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    reblur = _reblur_metric(work)
    sigma = _noise_sigma(gray)
    ratio = _blockiness(gray, origin)
    blur = float(np.clip((reblur - 0.35) / 0.40, 0.0, 1.0))
    noise = float(np.clip((sigma - 2.0) / 12.0, 0.0, 1.0))
    blocks = float(np.clip((ratio - 1.15) / 0.85, 0.0, 1.0))
    score = 1.0 - (1.0 - blur) * (1.0 - noise) * (1.0 - blocks)
    est = DegradationEstimate(score=score, blur=blur, noise=noise, blocks=blocks, reblur_metric=reblur,
                              noise_sigma=sigma, blockiness_ratio=ratio)
    logger.debug("degradation estimate: %s", est.to_dict())
    return est


def estimate_degradation(image_rgb: np.ndarray, face: Face | None = None) -> float:
    """How degraded a face photo looks, in [0, 1] (0 = clean, 1 = heavily degraded).

    Pass the detected ``face`` to measure blur and noise on the face itself (relative to
    its size) rather than the whole picture. Restoration maps this to its strength.
    """
    return degradation_report(image_rgb, face).score
