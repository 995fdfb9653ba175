"""Several people in one image: the region helpers the adapter families share.

A person is placed by a *face box* (pixels of the output).  Their identity acts inside a
*region* around it: the box grown by :data:`REGION_MARGIN` of its size on each side, where
two grown boxes overlap the pixel going to the nearer box (so regions never overlap and each
always holds its whole box).  The families consume the regions as diffusers' IP-Adapter
attention masks (:func:`masks_tensor`) and, for ControlNets conditioned per person
(InstantID's IdentityNet), as weights on each person's residuals (:func:`masked_residuals`).

Which presets can take several people is data on the adapter class (``max_people``):
:func:`facegen.adapters.registry.presets_that` reads it, so refusals name the presets that can.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError

PixelBox = tuple[int, int, int, int]          # x0, y0, x1, y1 (half-open) in output pixels
REGION_MARGIN = 0.35                          # a region reaches this fraction of its box size past it
def box_pixels(box: Sequence[float], width: int, height: int) -> PixelBox:
    """A box in fractions (0..1) of the image → whole output pixels, at least one pixel wide."""
    x0, y0, x1, y1 = (float(v) for v in box)
    px = (int(round(x0 * width)), int(round(y0 * height)), int(round(x1 * width)), int(round(y1 * height)))
    return px[0], px[1], max(px[2], px[0] + 1), max(px[3], px[1] + 1)


def region_masks(boxes: Sequence[PixelBox], width: int, height: int, margin: float = REGION_MARGIN
                 ) -> list[np.ndarray]:
    """One ``(height, width)`` uint8 mask (1 inside) per face box: the box grown by ``margin``
    of its larger side, overlaps given to the nearer box (Chebyshev distance over box size).
    Disjoint boxes give disjoint masks, each covering its box."""
    if not boxes:
        raise InvalidArgumentError("no face boxes to make regions of")
    ys, xs = np.mgrid[0:height, 0:width]
    xs, ys = xs + 0.5, ys + 0.5                                  # pixel centres
    dist = []
    for x0, y0, x1, y1 in boxes:
        side = float(max(x1 - x0, y1 - y0))
        dx = np.maximum(np.maximum(x0 - xs, xs - x1), 0.0)
        dy = np.maximum(np.maximum(y0 - ys, ys - y1), 0.0)
        dist.append(np.maximum(dx, dy) / side)
    d = np.stack(dist)                                           # (K, H, W)
    nearest = d.argmin(axis=0)
    inside = d.min(axis=0) <= margin
    return [((nearest == k) & inside).astype(np.uint8) for k in range(len(boxes))]


def mask_box(mask: np.ndarray) -> PixelBox:
    """The bounding box of a mask's nonzero pixels."""
    ys, xs = np.nonzero(np.asarray(mask))
    if xs.size == 0:
        raise InvalidArgumentError("a region mask is empty: every person needs a region with pixels in it")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def masks_tensor(masks: Sequence[Any], height: int, width: int) -> Any:
    """Region masks (PIL or HxW arrays, nonzero = inside) → ``[1, K, H, W]`` for IP attention."""
    from diffusers.image_processor import IPAdapterMaskProcessor
    from PIL import Image

    pil = []
    for i, m in enumerate(masks):
        if isinstance(m, Image.Image):
            pil.append(m.convert("L"))
            continue
        arr = np.asarray(m)
        if arr.ndim == 3:
            arr = arr.max(axis=2)
        if arr.ndim != 2:
            raise InvalidArgumentError(f"mask {i} must be an HxW array or a PIL image, got shape {arr.shape}")
        pil.append(Image.fromarray(((arr > 0) * 255).astype(np.uint8), mode="L"))
    processed = IPAdapterMaskProcessor().preprocess(pil, height=height, width=width)
    return processed.reshape(1, processed.shape[0], processed.shape[2], processed.shape[3])


def masked_residuals(down: Sequence[Any], mid: Any, mask: Any) -> tuple[list[Any], Any]:
    """A ControlNet's residuals weighted by a ``(H, W)`` pixel mask, area-averaged to each
    residual's resolution (upstream InstantID's region control multiplies them the same way)."""
    import torch.nn.functional as F

    m = mask.reshape(1, 1, *mask.shape[-2:]).float()

    def weigh(r: Any) -> Any:
        return r * F.interpolate(m.to(r.device), size=tuple(r.shape[-2:]), mode="area").to(r.dtype)
    return [weigh(r) for r in down], weigh(mid)
