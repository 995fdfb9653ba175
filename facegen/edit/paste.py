"""Paste an edited face crop back into the photo with the inverse affine and a soft alpha."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facegen.errors import InvalidArgumentError

__all__ = ["inswapper_mask_kernels", "paste_back", "paste_back_inswapper", "warped_mask_bbox"]

#: Alphas this close to 0 or 1 change a pixel by less than half a grey level: snap them.
_SNAP = 1.0 / 510.0


def _as_alpha(mask: np.ndarray) -> np.ndarray:
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise InvalidArgumentError(f"mask_crop must be 2-D (H, W), got shape {mask.shape}")
    a = mask.astype(np.float32)
    if mask.dtype == np.uint8:
        a /= 255.0
    elif mask.dtype != bool and (not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0):
        raise InvalidArgumentError("mask_crop must hold values in [0, 1] (or uint8 0–255 / bool)")
    return np.clip(a, 0.0, 1.0)


def _check_matrix(M: np.ndarray) -> np.ndarray:
    m = np.asarray(M, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all() or abs(np.linalg.det(m[:, :2])) < 1e-12:
        raise InvalidArgumentError(f"M must be an invertible 2×3 affine matrix, got {np.asarray(M).tolist()}")
    return m


def warped_mask_bbox(mask_crop: np.ndarray, M: np.ndarray, image_hw: tuple[int, int],
                     pad: int = 2) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` (exclusive ends) in the image of the non-zero part of
    a crop mask mapped back by ``M``⁻¹, clipped to the image; None when nothing lands inside."""
    ys, xs = np.nonzero(np.asarray(mask_crop).reshape(mask_crop.shape[:2]))
    if ys.size == 0:
        return None
    corners = np.array([[xs.min() - 1, ys.min() - 1], [xs.max() + 1, ys.min() - 1],
                        [xs.min() - 1, ys.max() + 1], [xs.max() + 1, ys.max() + 1]], dtype=np.float64)
    inv = cv2.invertAffineTransform(_check_matrix(M))
    pts = corners @ inv[:, :2].T + inv[:, 2]
    h, w = image_hw
    x0 = max(int(math.floor(pts[:, 0].min())) - pad, 0)
    y0 = max(int(math.floor(pts[:, 1].min())) - pad, 0)
    x1 = min(int(math.ceil(pts[:, 0].max())) + pad + 1, w)
    y1 = min(int(math.ceil(pts[:, 1].max())) + pad + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def paste_back(original_rgb: np.ndarray, edited_crop_rgb: np.ndarray, M: np.ndarray,
               mask_crop: np.ndarray, *, antialias: bool = True) -> np.ndarray:
    """Blend an edited aligned crop into ``original_rgb`` where ``mask_crop`` says so.

    ``M`` is the 2×3 image→crop matrix the crop was made with (``FaceCrop.M``); the crop and
    its soft mask (float in [0, 1], uint8 0–255 or bool, crop-sized) are warped back with
    ``M``⁻¹ and alpha-blended in float. Guarantees: the result has the input's shape and
    dtype (uint8); wherever the warped alpha is 0 the output *is* the input, pixel for
    pixel; only the bounding box of the warped mask is computed (cheap on 12-MP photos).
    When the crop is finer than the photo (``FaceCrop.scale`` > 1.25) it is Gaussian
    low-passed first (``antialias``), so generated detail does not alias on the way down;
    an unchanged crop then comes back within about a grey level on average (bicubic both
    ways; about 0.2 without ``antialias``).
    """
    if not isinstance(original_rgb, np.ndarray) or original_rgb.dtype != np.uint8 or original_rgb.ndim != 3:
        raise InvalidArgumentError("original_rgb must be a uint8 array (H, W, C)")
    if not isinstance(edited_crop_rgb, np.ndarray) or edited_crop_rgb.dtype != np.uint8 \
            or edited_crop_rgb.ndim != 3 or edited_crop_rgb.shape[2] != original_rgb.shape[2]:
        got = f"{edited_crop_rgb.dtype} {edited_crop_rgb.shape}" if isinstance(edited_crop_rgb, np.ndarray) \
            else type(edited_crop_rgb).__name__
        raise InvalidArgumentError(f"edited_crop_rgb must be uint8 (S, S, {original_rgb.shape[2]}), got {got}")
    alpha = _as_alpha(np.asarray(mask_crop))
    if alpha.shape != edited_crop_rgb.shape[:2]:
        raise InvalidArgumentError(f"mask_crop shape {alpha.shape} does not match the crop's "
                                   f"{edited_crop_rgb.shape[:2]}")
    m = _check_matrix(M)
    out = original_rgb.copy()
    h, w = original_rgb.shape[:2]
    box = warped_mask_bbox(alpha, m, (h, w))
    if box is None:
        return out

    crop = edited_crop_rgb
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if antialias and scale > 1.25:
        # the crop is finer than the photo: low-pass it first (σ = (scale − 1)/2 crop pixels,
        # skimage's rule) so generated detail does not alias when it is resampled down
        sigma = (scale - 1.0) / 2.0
        crop = cv2.GaussianBlur(crop, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)

    x0, y0, x1, y1 = box
    # dst(x, y) = crop(m · (x + x0, y + y0)): the ROI's own image→crop map, used as an inverse map
    m_roi = m.copy()
    m_roi[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)
    size = (x1 - x0, y1 - y0)
    # bicubic for the pixels (sharper round trip), bilinear for alpha (no overshoot)
    warped = cv2.warpAffine(crop, m_roi, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, m_roi, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    a = np.clip(a, 0.0, 1.0)
    a[a < _SNAP] = 0.0
    a[a > 1.0 - _SNAP] = 1.0

    roi = original_rgb[y0:y1, x0:x1]
    a3 = a[..., None]
    blended = roi.astype(np.float32) + a3 * (warped.astype(np.float32) - roi.astype(np.float32))
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    untouched = a == 0.0
    blended[untouched] = roi[untouched]
    out[y0:y1, x0:x1] = blended
    return out


def inswapper_mask_kernels(mask_h: int, mask_w: int) -> tuple[int, int]:
    """insightface ``INSwapper.get(paste_back=True)``'s mask sizes, from the height and width
    (in **target-image pixels**) of the warped crop mask: the erosion kernel side and the
    Gaussian blur's half size (kernel ``2k + 1``)."""
    mask_size = int(np.sqrt(mask_h * mask_w))
    return max(mask_size // 10, 10), max(mask_size // 20, 5)


def _warp_into(src: np.ndarray, inv: np.ndarray, x0: int, y0: int, size: tuple[int, int]) -> np.ndarray:
    """``cv2.warpAffine(src, inv, full image)`` restricted to the window at (x0, y0) of ``size``."""
    m = inv.copy()
    m[:, 2] -= (x0, y0)
    return cv2.warpAffine(src, m, size, borderValue=0.0)


def paste_back_inswapper(target_rgb: np.ndarray, fake_crop_rgb: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Paste an inswapper output crop back exactly as insightface 0.7.3 does: the crop and a
    white crop-sized mask are warped back with ``M``⁻¹ (bilinear, black border), the mask is
    thresholded at 20, eroded and blurred with kernels sized in target-image pixels
    (:func:`inswapper_mask_kernels`), and blended in float then truncated to uint8.

    Only a window around the face is computed (insightface warps whole frames): the window
    holds the warped mask plus the erosion and blur reach, so the result matches the
    whole-frame computation (up to OpenCV's fixed-point rounding of the shifted matrix, at
    most one grey level on rare pixels); pixels outside the mask are the target's exactly.
    """
    if target_rgb.dtype != np.uint8 or target_rgb.ndim != 3 or fake_crop_rgb.dtype != np.uint8:
        raise InvalidArgumentError("paste_back_inswapper takes uint8 (H, W, 3) images")
    inv = cv2.invertAffineTransform(_check_matrix(M))
    h, w = target_rgb.shape[:2]
    s_h, s_w = fake_crop_rgb.shape[:2]
    corners = np.array([[0, 0], [s_w, 0], [0, s_h], [s_w, s_h]], dtype=np.float64) @ inv[:, :2].T + inv[:, 2]
    bx0, by0 = max(int(np.floor(corners[:, 0].min())) - 2, 0), max(int(np.floor(corners[:, 1].min())) - 2, 0)
    bx1, by1 = min(int(np.ceil(corners[:, 0].max())) + 3, w), min(int(np.ceil(corners[:, 1].max())) + 3, h)
    if bx0 >= bx1 or by0 >= by1:
        return target_rgb.copy()
    white = np.full((s_h, s_w), 255, dtype=np.float32)
    probe = _warp_into(white, inv, bx0, by0, (bx1 - bx0, by1 - by0))
    ys, xs = np.nonzero(probe > 20)
    if ys.size == 0:
        return target_rgb.copy()
    k_erode, k_blur = inswapper_mask_kernels(int(ys.max() - ys.min()), int(xs.max() - xs.min()))
    pad = k_erode + k_blur + 4
    x0, y0 = max(bx0 - pad, 0), max(by0 - pad, 0)
    x1, y1 = min(bx1 + pad, w), min(by1 + pad, h)
    size = (x1 - x0, y1 - y0)
    fake = _warp_into(fake_crop_rgb, inv, x0, y0, size)
    mask = _warp_into(white, inv, x0, y0, size)
    mask[mask > 20] = 255
    mask = cv2.erode(mask, np.ones((k_erode, k_erode), np.uint8), iterations=1)
    mask = cv2.GaussianBlur(mask, (2 * k_blur + 1, 2 * k_blur + 1), 0)
    alpha = (mask / 255)[..., None]
    roi = target_rgb[y0:y1, x0:x1]
    out = target_rgb.copy()
    out[y0:y1, x0:x1] = (alpha * fake + (1 - alpha) * roi.astype(np.float32)).astype(np.uint8)
    return out
