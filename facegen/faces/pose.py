"""Pose geometry: where a face's 5 points (eyes, nose tip, mouth corners) go in an image to be
generated, and the drawing the keypoint ControlNets take.

A pose is a yaw angle, a ``{yaw, pitch, roll}`` mapping (degrees) or 5 keypoints in fractions of
the image (:func:`pose_kps`); a generic head turned by it (:func:`head_pose_kps`) or a reference
face's own points are framed as a portrait (:func:`portrait_kps`) or placed in a person's face box
(:func:`kps_in_box`); without a face the frontal face is the one ArcFace template
(:data:`facegen.faces.align.ARCFACE_112`).  :func:`draw_kps` renders the points as the
IdentityNet-style condition image.  Every family and the dataset layer take poses from here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError
from facegen.faces.align import ARCFACE_112

KPS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
KPS_LIMBS = ((0, 2), (1, 2), (3, 2), (4, 2))   # each eye / mouth corner to the nose
FACE_FILL = 0.42                              # eye-to-mouth distance as a fraction of the face box side
FACE_CENTRE_Y = 0.55                          # the 5 points' centroid, as a fraction down the face box


def draw_kps(width: int, height: int, kps: np.ndarray, stick_width: int = 4, radius: int = 10) -> Any:
    """IdentityNet's condition image: limbs (point → nose) at 60 % colour, then full-colour dots."""
    import cv2
    from PIL import Image

    kps = np.asarray(kps, dtype=np.float32).reshape(5, 2)   # float32 maths as upstream (insightface kps)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for a, b in KPS_LIMBS:
        (xa, ya), (xb, yb) = kps[a], kps[b]
        length = ((xa - xb) ** 2 + (ya - yb) ** 2) ** 0.5
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        centre = (int((xa + xb) / 2), int((ya + yb) / 2))
        poly = cv2.ellipse2Poly(centre, (int(length / 2), stick_width), int(angle), 0, 360, 1)
        dim = tuple(int(c * 0.6) for c in KPS_COLORS[a])
        cv2.fillConvexPoly(canvas, poly, dim)
    for (x, y), colour in zip(kps, KPS_COLORS):
        cv2.circle(canvas, (int(x), int(y)), radius, colour, -1)
    return Image.fromarray(canvas)


def portrait_kps(kps: np.ndarray | None, width: int, height: int, eye_mouth_fraction: float = 0.16) -> np.ndarray:
    """Place a face's 5 points (any image coordinates) in a portrait framing of the output.

    Keeps the reference's pose (roll and relative point layout); scales it so the eye-centre to
    mouth-centre distance is ``eye_mouth_fraction`` of the shorter side and centres it at
    (50 %, 45 %).  Without a face, the frontal ArcFace layout is used.
    """
    pts = np.asarray(ARCFACE_112 if kps is None else kps, dtype=np.float64).reshape(5, 2)
    eyes, mouth = pts[:2].mean(axis=0), pts[3:].mean(axis=0)
    span = float(np.linalg.norm(mouth - eyes))
    if span < 1e-6:
        raise InvalidArgumentError("the face keypoints are degenerate (eyes and mouth coincide)")
    scale = eye_mouth_fraction * min(width, height) / span
    centred = (pts - pts.mean(axis=0)) * scale
    return (centred + np.array([0.5 * width, 0.45 * height])).astype(np.float32)


# a generic head's 5 points in 3-D (x right, y up, z towards the camera; eye centres, nose tip,
# mouth corners; arbitrary units): rotated by a pose and projected for IdentityNet's drawing
_HEAD_3D = np.array([[-165.0, 170.0, -135.0], [165.0, 170.0, -135.0], [0.0, 0.0, 0.0],
                     [-150.0, -150.0, -125.0], [150.0, -150.0, -125.0]])


def head_pose_kps(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """5 keypoints (image coordinates, y down, arbitrary scale) of a generic head turned by
    ``yaw`` (degrees, > 0: towards the image's right), ``pitch`` (> 0: looking up) and ``roll``
    (> 0: clockwise in the image); orthographic projection.  Place them with :func:`portrait_kps`."""
    for name, v in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
        if not (math.isfinite(v) and -90.0 < v < 90.0):
            raise InvalidArgumentError(f"{name} must be a number of degrees in (-90, 90), got {v!r}")
    y_, p_, r_ = (math.radians(v) for v in (yaw, pitch, roll))
    pitch_m = np.array([[1, 0, 0], [0, math.cos(p_), math.sin(p_)], [0, -math.sin(p_), math.cos(p_)]])
    yaw_m = np.array([[math.cos(y_), 0, math.sin(y_)], [0, 1, 0], [-math.sin(y_), 0, math.cos(y_)]])
    pts = _HEAD_3D @ pitch_m.T @ yaw_m.T
    xy = np.stack([pts[:, 0], -pts[:, 1]], axis=1)                       # image axes: y down
    c, s = math.cos(r_), math.sin(r_)
    return (xy @ np.array([[c, s], [-s, c]])).astype(np.float32)        # clockwise in the image


def pose_kps(pose: Any, width: int, height: int) -> np.ndarray:
    """A pose → 5 keypoints in output pixels.  ``pose``: a yaw angle in degrees, a mapping with
    any of ``yaw`` / ``pitch`` / ``roll`` (degrees), or 5 ``[x, y]`` keypoints (eyes, nose, mouth
    corners) in fractions 0..1 of the width and height."""
    if isinstance(pose, bool):
        pose = None
    if isinstance(pose, (int, float)):
        return portrait_kps(head_pose_kps(yaw=float(pose)), width, height)
    if isinstance(pose, dict):
        unknown = set(pose) - {"yaw", "pitch", "roll"}
        if unknown or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pose.values()):
            raise InvalidArgumentError(f"a pose mapping takes numeric yaw, pitch and roll (degrees), got {pose!r}")
        return portrait_kps(head_pose_kps(**{k: float(v) for k, v in pose.items()}), width, height)
    try:
        pts = np.asarray(pose, dtype=np.float32)
    except (TypeError, ValueError):
        pts = np.zeros(0, np.float32)
    if pts.shape != (5, 2) or not np.isfinite(pts).all() or (pts < 0).any() or (pts > 1).any():
        raise InvalidArgumentError(
            "a pose is a yaw angle, {yaw, pitch, roll} in degrees, or 5 [x, y] keypoints in fractions 0..1 "
            f"of the image; got {pose!r}")
    return pts * np.array([width, height], dtype=np.float32)


def kps_in_box(kps: np.ndarray | None, box: tuple[int, int, int, int], fill: float = FACE_FILL) -> np.ndarray:
    """A face's 5 points (any coordinates; None: a frontal face) placed in a face box, keeping
    their pose (roll, relative layout): eye-to-mouth distance ``fill`` of the box's shorter
    side, centroid at the box's centre, :data:`FACE_CENTRE_Y` of the way down."""
    pts = np.asarray(ARCFACE_112 if kps is None else kps, dtype=np.float64).reshape(5, 2)
    span = float(np.linalg.norm(pts[3:].mean(axis=0) - pts[:2].mean(axis=0)))
    if span < 1e-6:
        raise InvalidArgumentError("the face keypoints are degenerate (eyes and mouth coincide)")
    x0, y0, x1, y1 = box
    scale = fill * min(x1 - x0, y1 - y0) / span
    centre = np.array([(x0 + x1) / 2.0, y0 + FACE_CENTRE_Y * (y1 - y0)])
    return ((pts - pts.mean(axis=0)) * scale + centre).astype(np.float32)
