"""Full-reference image quality: PSNR, SSIM, and the restoration benchmark record.

SSIM follows Wang, Bovik, Sheikh & Simoncelli (2004): an 11×11 Gaussian window of σ = 1.5,
``C1 = (0.01·L)²``, ``C2 = (0.03·L)²`` with ``L`` the data range, sample covariances
(N/(N−1) correction off, as in the paper's code), and the mean of the SSIM map over the
pixels whose window lies fully inside the image (MATLAB ``filter2(.., 'valid')``). Colour
images are scored per channel and averaged (``channel='mean'``) or on BT.601 luma
(``channel='gray'``).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import cv2
import numpy as np

from facegen.errors import InvalidArgumentError

__all__ = ["psnr", "ssim", "ssim_map", "evaluate_restoration", "IDSimilarityFn"]

#: ``(restored_rgb, reference_rgb) -> cosine similarity`` from an independent face encoder.
IDSimilarityFn = Callable[[np.ndarray, np.ndarray], float]

_WIN, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InvalidArgumentError(f"images must have the same shape to be compared, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise InvalidArgumentError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def _data_range(a: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        if data_range <= 0:
            raise InvalidArgumentError(f"data_range must be > 0, got {data_range}")
        return float(data_range)
    if a.dtype == np.uint8:
        return 255.0
    if a.dtype == np.uint16:
        return 65535.0
    raise InvalidArgumentError(f"pass data_range for {a.dtype} images (e.g. 1.0 for floats in [0, 1])")


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(L² / MSE)``; ``inf`` for identical images."""
    rng = _data_range(np.asarray(a), data_range)
    x, y = _pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(rng * rng / mse)


def _luma(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """The SSIM map of two single-channel images (float64), on the 'valid' region."""
    x, y = _pair(a, b)
    if x.ndim != 2:
        raise InvalidArgumentError(f"ssim_map takes single-channel (H, W) images, got {x.shape}")
    if min(x.shape) < _WIN:
        raise InvalidArgumentError(f"SSIM needs images of at least {_WIN}×{_WIN} pixels, got {x.shape}")
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2

    def filt(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (_WIN, _WIN), _SIGMA, borderType=cv2.BORDER_REFLECT_101)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x * mu_x
    syy = filt(y * y) - mu_y * mu_y
    sxy = filt(x * y) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    r = _WIN // 2
    return (num / den)[r:-r, r:-r]


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None,
         channel: Literal["mean", "gray"] = "mean") -> float:
    """Mean SSIM (Wang et al. 2004) of two images of the same shape; 1.0 for identical images.

    ``(H, W)`` images are scored directly; ``(H, W, C)`` per channel then averaged
    (``channel='mean'``) or on BT.601 luma for RGB (``channel='gray'``).
    """
    rng = _data_range(np.asarray(a), data_range)
    x, y = _pair(a, b)
    if x.ndim == 2:
        return float(ssim_map(x, y, rng).mean())
    if channel == "gray":
        if x.shape[2] != 3:
            raise InvalidArgumentError(f"channel='gray' needs RGB images, got {x.shape[2]} channels")
        return float(ssim_map(_luma(x), _luma(y), rng).mean())
    if channel != "mean":
        raise InvalidArgumentError(f"channel must be 'mean' or 'gray', got {channel!r}")
    return float(np.mean([ssim_map(x[..., c], y[..., c], rng).mean() for c in range(x.shape[2])]))


def evaluate_restoration(restored: np.ndarray, original: np.ndarray, id_sim_fn: IDSimilarityFn | None = None,
                         *, degraded: np.ndarray | None = None) -> dict[str, float]:
    """Benchmark record of a restored image against the clean original (same shape, uint8 RGB).

    Returns ``psnr`` (dB), ``ssim`` (per-channel mean) and ``ssim_gray``; with ``id_sim_fn``
    (an independent encoder's cosine similarity) also ``id_similarity``; with the
    ``degraded`` input also ``psnr_degraded``/``ssim_degraded`` and the gains over it.
    """
    out: dict[str, float] = {
        "psnr": psnr(restored, original),
        "ssim": ssim(restored, original),
        "ssim_gray": ssim(restored, original, channel="gray") if np.asarray(original).ndim == 3 else
        ssim(restored, original),
    }
    if degraded is not None:
        out["psnr_degraded"] = psnr(degraded, original)
        out["ssim_degraded"] = ssim(degraded, original)
        out["psnr_gain"] = out["psnr"] - out["psnr_degraded"]
        out["ssim_gain"] = out["ssim"] - out["ssim_degraded"]
    if id_sim_fn is not None:
        out["id_similarity"] = float(id_sim_fn(restored, original))
    return out
