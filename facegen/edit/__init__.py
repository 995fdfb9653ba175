"""Shared machinery of the face edit jobs (swap, aging, restoration).

crop → mask → (generate) → colour-match → paste back::

    fc = crop_face(image_rgb, face, size=512, template="ffhq")
    mask = face_mask(fc, face)                      # soft, crop coordinates
    edited = match_color(generated, fc.crop, mask)  # Reinhard in LAB on the masked region
    out = paste_back(image_rgb, edited, fc.M, mask) # unchanged wherever alpha == 0
"""

from .color import ColorMethod, masked_lab_stats, match_color
from .crop import FaceCrop, crop_face, crop_template_points
from .mask import (MaskKind, RegionMaskFn, box_mask, crop_mask, ellipse_mask, face_mask, hull_points,
                   landmark_hull_mask, mouth_mask, soften_mask)
from .paste import paste_back, warped_mask_bbox

__all__ = [
    "FaceCrop", "crop_face", "crop_template_points",
    "RegionMaskFn", "MaskKind", "soften_mask", "landmark_hull_mask", "ellipse_mask", "crop_mask", "box_mask",
    "face_mask", "hull_points", "mouth_mask",
    "ColorMethod", "match_color", "masked_lab_stats",
    "paste_back", "warped_mask_bbox",
]
