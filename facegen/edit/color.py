"""Colour matching of a generated face crop to the photo it will be pasted into."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from facegen.errors import InvalidArgumentError

__all__ = ["ColorMethod", "match_color", "masked_lab_stats"]

ColorMethod = Literal["mean_std", "none"]
#: Bounds on the per-channel std ratio, so a near-flat region cannot blow colours up.
_RATIO_RANGE = (0.25, 4.0)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB → float32 CIE L*a*b* (L in [0, 100], a/b about [-127, 127])."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _check_rgb(name: str, rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InvalidArgumentError(f"{name} must be an RGB uint8 array (H, W, 3), got {got}")


def _weights(mask: np.ndarray | None, hw: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    if mask.shape != hw:
        raise InvalidArgumentError(f"mask shape {mask.shape} does not match the images' {hw}")
    w = mask.astype(np.float64)
    if mask.dtype == np.uint8:
        w /= 255.0
    w = np.clip(w, 0.0, 1.0)
    return w if w.sum() >= 1.0 else None


def masked_lab_stats(rgb: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``rgb`` in LAB, weighted by a soft ``mask`` (None: all pixels)."""
    _check_rgb("image", rgb)
    lab = _to_lab(rgb).reshape(-1, 3).astype(np.float64)
    w = _weights(mask, rgb.shape[:2])
    if w is None:
        return lab.mean(0), lab.std(0)
    w = w.reshape(-1, 1)
    mean = (lab * w).sum(0) / w.sum()
    std = np.sqrt(((lab - mean) ** 2 * w).sum(0) / w.sum())
    return mean, std


def match_color(generated_rgb: np.ndarray, target_rgb: np.ndarray, mask: np.ndarray | None = None,
                method: ColorMethod = "mean_std", strength: float = 1.0) -> np.ndarray:
    """Shift the colours of ``generated_rgb`` so its masked region matches ``target_rgb``'s.

    ``method='mean_std'`` is Reinhard et al. (2001) colour transfer in CIE LAB: each channel
    is standardised with the generated crop's masked mean/std and rescaled to the target's
    (std ratio kept within [0.25, 4]). Statistics are weighted by ``mask`` (soft, in the
    crops' coordinates, same H×W as both images; None = whole crops, which may then differ
    in size); the transform is applied to every pixel of ``generated_rgb``, and paste-back's
    alpha decides where it shows. ``strength`` in [0, 1] blends between no change and the
    full transfer. ``method='none'`` returns a copy. Output: uint8 RGB, shape of
    ``generated_rgb``.
    """
    _check_rgb("generated_rgb", generated_rgb)
    _check_rgb("target_rgb", target_rgb)
    if method == "none":
        return generated_rgb.copy()
    if method != "mean_std":
        raise InvalidArgumentError(f"unknown colour matching method '{method}'; choose 'mean_std' or 'none'")
    if not 0.0 <= strength <= 1.0:
        raise InvalidArgumentError(f"colour matching strength must be in [0, 1], got {strength}")
    if mask is not None and generated_rgb.shape != target_rgb.shape:
        raise InvalidArgumentError(f"with a mask, generated {generated_rgb.shape} and target {target_rgb.shape} "
                                   "crops must have the same shape")
    mu_g, sd_g = masked_lab_stats(generated_rgb, mask)
    mu_t, sd_t = masked_lab_stats(target_rgb, mask)
    ratio = np.where(sd_g > 1e-6, sd_t / np.maximum(sd_g, 1e-6), 1.0).clip(*_RATIO_RANGE)
    ratio = 1.0 + strength * (ratio - 1.0)
    shift = mu_g + strength * (mu_t - mu_g)
    lab = _to_lab(generated_rgb).astype(np.float64)
    lab = (lab - mu_g) * ratio + shift
    lab[..., 0] = lab[..., 0].clip(0.0, 100.0)
    lab[..., 1:] = lab[..., 1:].clip(-127.0, 127.0)
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
