"""Alignment templates and the similarity transforms that crop a face to them.

Pure geometry: every function returns the 2×3 affine matrix it used, so paste-back is one
inverse warp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from facegen.errors import InvalidArgumentError

#: insightface ``arcface_dst``: the ArcFace 112×112 5-point template (left eye, right eye,
#: nose tip, left mouth corner, right mouth corner, image coordinates).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32)

#: facexlib / CodeFormer FFHQ 512×512 5-point template used by face-restoration models.
FFHQ_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043],
     [313.08905, 371.15118]], dtype=np.float32)

TemplateName = Literal["arcface", "ffhq"]
TEMPLATES: dict[str, tuple[np.ndarray, int]] = {"arcface": (ARCFACE_112, 112), "ffhq": (FFHQ_512, 512)}


@dataclass(frozen=True)
class CropTemplate:
    """A named crop a network takes (the ``template`` of an encoder or auxiliary registry entry).

    template: the :data:`TEMPLATES` layout the crop is warped onto, or None when the network's
        own library aligns the face (dlib's ``get_face_chip``, from its 5-point shape).
    size: the crop's side in pixels.
    padding: context around the face for a library-aligned crop (dlib's ``padding``).
    """

    name: str
    template: TemplateName | None
    size: int
    padding: float = 0.0


#: the registry's template names, as data: what each network is fed
CROP_TEMPLATES: dict[str, CropTemplate] = {t.name: t for t in (
    CropTemplate("arcface112", "arcface", 112),               # insightface ArcFace recognition
    CropTemplate("arcface128", "arcface", 128),               # inswapper_128 (template shifted 8 px)
    CropTemplate("dlib-chip150", None, 150, padding=0.25),    # dlib ResNet descriptor's own chip
    CropTemplate("ffhq512", "ffhq", 512),                     # facexlib FaceRestoreHelper (PuLID's EVA crop)
)}


def crop_template(name: str) -> CropTemplate:
    """The named crop of a registry entry; a typo names the choices."""
    try:
        return CROP_TEMPLATES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown crop template '{name}'; choose one of: {', '.join(sorted(CROP_TEMPLATES))}") from None


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src → dst.

    Returns the 2×3 matrix (Umeyama 1991, what skimage ``SimilarityTransform.estimate`` fits).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise InvalidArgumentError(f"umeyama needs two (N, 2) point sets, got {src.shape} and {dst.shape}")
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / n
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    r = u @ np.diag(d) @ vt
    var_s = (s_c ** 2).sum() / n
    scale = (sig * d).sum() / var_s if var_s > 0 else 1.0
    t = mu_d - scale * r @ mu_s
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * r
    m[:, 2] = t
    return m


def template_points(size: int, template: TemplateName = "arcface") -> np.ndarray:
    """The template's 5 points for an output of ``size`` pixels.

    ArcFace follows insightface ``estimate_norm``: sizes that are multiples of 112 scale the
    112 template; otherwise multiples of 128 scale it by size/128 and shift x by 8·size/128
    (so 128 → template + 8 px, the inswapper crop). FFHQ scales the 512 template.
    """
    if template == "arcface":
        if size % 112 == 0:
            ratio, diff_x = size / 112.0, 0.0
        elif size % 128 == 0:
            ratio = size / 128.0
            diff_x = 8.0 * ratio
        else:
            raise InvalidArgumentError(f"ArcFace crops must be a multiple of 112 or 128 pixels, got {size}")
        dst = ARCFACE_112 * ratio
        dst[:, 0] += diff_x
        return dst.astype(np.float32)
    if template == "ffhq":
        if size <= 0:
            raise InvalidArgumentError(f"crop size must be positive, got {size}")
        return (FFHQ_512 * (size / 512.0)).astype(np.float32)
    raise InvalidArgumentError(f"unknown alignment template '{template}'; choose one of: {', '.join(TEMPLATES)}")


def estimate_norm(kps: np.ndarray, size: int = 112, template: TemplateName = "arcface") -> np.ndarray:
    """The 2×3 similarity transform taking the 5 face points onto the template at ``size``."""
    kps = np.asarray(kps, dtype=np.float32)
    if kps.shape != (5, 2):
        raise InvalidArgumentError(f"alignment needs 5 keypoints of shape (5, 2), got {kps.shape}")
    return umeyama(kps, template_points(size, template))


def align_matrix(kps: np.ndarray, size: int = 112, template: TemplateName = "arcface",
                 margin: float = 0.0) -> np.ndarray:
    """The image → crop 2×3 matrix of :func:`warp_face` (no pixels touched).

    ``margin`` > 0 zooms out (a margin of 0.25 shows 25 % more context on each side) while
    keeping the face centred, for edit tasks that need hair and chin.
    """
    m = estimate_norm(kps, size, template)
    if margin:
        c = size / 2.0
        s = 1.0 / (1.0 + 2.0 * margin)
        zoom = np.array([[s, 0, c - s * c], [0, s, c - s * c], [0, 0, 1]])
        m = (zoom @ np.vstack([m, [0, 0, 1]]))[:2]
    return m


def warp_face(image: np.ndarray, kps: np.ndarray, size: int = 112, template: TemplateName = "arcface",
              margin: float = 0.0, border: int = cv2.BORDER_CONSTANT,
              flags: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """Crop the face to ``size``×``size`` on the template; return ``(crop, M)``."""
    m = align_matrix(kps, size, template, margin)
    crop = cv2.warpAffine(image, m, (size, size), flags=flags, borderMode=border, borderValue=0.0)
    return crop, m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]).astype(np.float32)


def inverse_warp(crop: np.ndarray, m: np.ndarray, out_hw: tuple[int, int],
                 flags: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp an aligned crop back into an image of height/width ``out_hw`` (zeros outside)."""
    h, w = out_hw
    return cv2.warpAffine(crop, invert_affine(m), (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0)
