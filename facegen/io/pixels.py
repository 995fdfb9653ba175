"""Pixels to RGB ``uint8``: every colour mode Pillow decodes and every array layout accepted.

16-bit values are scaled by 255/65535 (not clipped), float images in [0, 1] rounded,
out-of-range integer or float images stretched min-max (with a warning), transparency
composited on white, CMYK converted through its ICC profile when it has one.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

from facegen.errors import BadImageError
from facegen.io.guard import check_pixels

logger = logging.getLogger(__name__)

_MAX_ARRAY_CHANNELS = (1, 3, 4)
_FLOAT_TOLERANCE = 1e-3


def mode_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return np.array(im, dtype=np.uint8, order="C")
    if mode.startswith("I;16"):
        return _grey_to_rgb(_scale16(np.asarray(im)))
    if mode == "I":
        values = np.asarray(im).astype(np.int64)
        if values.min() >= 0 and values.max() <= 65535:
            return _grey_to_rgb(_scale16(values))
        logger.warning("%s: 32-bit integer image outside 0..65535, stretched min-max", name)
        return _grey_to_rgb(_stretch(values.astype(np.float64)))
    if mode == "F":
        values = np.asarray(im, dtype=np.float64)
        values = np.where(np.isfinite(values), values, 0.0)
        if values.min() >= -_FLOAT_TOLERANCE and values.max() <= 1 + _FLOAT_TOLERANCE:
            return _grey_to_rgb(_float01_to_uint8(values))
        logger.warning("%s: float image outside [0, 1], stretched min-max", name)
        return _grey_to_rgb(_stretch(values))
    if mode == "CMYK":
        return np.array(_cmyk_to_rgb(im), dtype=np.uint8, order="C")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("LA").convert("RGBA") if mode == "La" else im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8,
                        order="C")
    try:
        return np.array(im.convert("RGB"), dtype=np.uint8, order="C")
    except ValueError as exc:
        raise BadImageError(f"{name}: cannot convert colour mode {mode} to RGB") from exc


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one, else Pillow's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"),
                                            outputMode="RGB")
            if out is not None:
                return out
        except Exception as exc:  # noqa: BLE001 - bad profile: fall back, don't fail
            logger.debug("ICC conversion failed (%s); using plain CMYK->RGB", exc)
    return im.convert("RGB")


def _scale16(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (x / 257)."""
    wide = values.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _float01_to_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return _float01_to_uint8((values - lo) / (hi - lo))


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def array_to_rgb(arr: np.ndarray, max_pixels: int | None, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in _MAX_ARRAY_CHANNELS:
        raise BadImageError(
            f"{name}: an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got shape {tuple(arr.shape)}")
    height, width, channels = arr.shape
    check_pixels((width, height), max_pixels, name)
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        out = _scale16(arr)
    elif np.issubdtype(arr.dtype, np.floating):
        values = arr.astype(np.float64)
        if not np.isfinite(values).all():
            raise BadImageError(f"{name}: the float image contains NaN or infinity")
        lo, hi = float(values.min()), float(values.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
            raise BadImageError(
                f"{name}: float images must hold values in [0, 1], got [{lo:g}, {hi:g}]"
                + ("; divide by 255 first" if hi <= 255 and lo >= 0 else ""))
        out = _float01_to_uint8(values)
    else:
        raise BadImageError(
            f"{name}: unsupported array dtype {arr.dtype}; use uint8, uint16, bool or float "
            "in [0, 1] (e.g. arr.astype(np.uint8) for 0..255 integers)")
    if channels == 1:
        out = np.repeat(out, 3, axis=2)
    elif channels == 4:
        alpha = out[:, :, 3:4].astype(np.uint32)
        colour = out[:, :, :3].astype(np.uint32)
        out = ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.array(out, dtype=np.uint8, order="C", copy=True)
