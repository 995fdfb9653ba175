"""Head pose (yaw, pitch, roll in degrees) from face landmarks: a simple, documented estimate.

A generic 3D face model (the 6-point model used with OpenCV's ``solvePnP`` in many head-pose
tutorials, in millimetre-like units) is fitted to the face's 2D points by a perspective-n-point
solve started from a frontal pose: nose tip, chin, outer eye corners and mouth corners from
dlib's 68 iBUG points, or eye centres, nose tip and mouth corners from the ArcFace 5 points
(SCRFD faces).  The camera is a pinhole with a focal length of the image's longer side,
centred on the face box (so a face's place in the frame adds no apparent rotation).

Angles follow the camera frame (x right, y down, z forward) with ``R = Rz(roll) Ry(yaw)
Rx(pitch)``: **yaw > 0** the face turns toward the image's left, **pitch > 0** it looks down,
**roll > 0** the head leans clockwise in the image.  A frontal
face is (0, 0, 0).  Expect errors of several degrees (one generic head for everyone, a guessed
focal length); use the spread over many images, not single values.
"""

from __future__ import annotations

import math

import numpy as np

from facegen.faces.types import Face

#: generic 3D points, camera frame (x right, y down, z away from the camera), nose tip at 0
MODEL_68: dict[int, tuple[float, float, float]] = {
    30: (0.0, 0.0, 0.0),           # nose tip
    8: (0.0, 330.0, 65.0),         # chin
    36: (-225.0, -170.0, 135.0),   # left eye, outer corner (image left)
    45: (225.0, -170.0, 135.0),    # right eye, outer corner
    48: (-150.0, 150.0, 125.0),    # left mouth corner
    54: (150.0, 150.0, 125.0),     # right mouth corner
}
#: the ArcFace 5 points: eye centres, nose tip, mouth corners
MODEL_5 = np.array([(-165.0, -170.0, 135.0), (165.0, -170.0, 135.0), (0.0, 0.0, 0.0),
                    (-150.0, 150.0, 125.0), (150.0, 150.0, 125.0)], dtype=np.float64)


def model_points(n: int) -> np.ndarray:
    """The 3D model for ``n`` = 68 (its 6 points, in :data:`MODEL_68` order) or 5 points."""
    if n == 68:
        return np.array(list(MODEL_68.values()), dtype=np.float64)
    if n == 5:
        return MODEL_5.copy()
    raise ValueError(f"head pose needs 68 or 5 landmarks, got {n}")


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` for angles in degrees (the convention above)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_angles(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix, inverse of :func:`rotation_matrix`."""
    yaw = math.degrees(math.asin(float(np.clip(-rot[2, 0], -1.0, 1.0))))
    pitch = math.degrees(math.atan2(float(rot[2, 1]), float(rot[2, 2])))
    roll = math.degrees(math.atan2(float(rot[1, 0]), float(rot[0, 0])))
    return yaw, pitch, roll


def pose_from_points(points2d: np.ndarray, center: tuple[float, float], focal: float) -> tuple[float, float, float]:
    """(yaw, pitch, roll) of 2D points matching :func:`model_points` of the same count
    (6 for the 68-point subset, 5 for ArcFace points), with a pinhole camera."""
    import cv2

    pts = np.asarray(points2d, dtype=np.float64).reshape(-1, 2)
    model = model_points(68 if len(pts) == 6 else len(pts))
    cam = np.array([[focal, 0, center[0]], [0, focal, center[1]], [0, 0, 1]], dtype=np.float64)
    # start frontal, at the distance where the model's width matches the points' width
    width2d = max(float(np.ptp(pts[:, 0])), 1.0)
    width3d = float(np.ptp(model[:, 0]))
    off = pts.mean(axis=0) - np.asarray(center)
    z0 = focal * width3d / width2d
    rvec = np.zeros((3, 1))
    tvec = np.array([[off[0] * z0 / focal], [off[1] * z0 / focal], [z0]])
    ok, rvec, tvec = cv2.solvePnP(model, pts, cam, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return float("nan"), float("nan"), float("nan")
    rot, _ = cv2.Rodrigues(rvec)
    return euler_angles(rot)


def head_pose(face: Face, image_shape: tuple[int, ...] | None = None) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a detected face: from its 68 landmarks when it has
    them (dlib), else from its 5 ArcFace points."""
    if face.landmarks68 is not None and len(face.landmarks68) == 68:
        pts = np.asarray(face.landmarks68, dtype=np.float64)[list(MODEL_68)]
    else:
        pts = np.asarray(face.kps, dtype=np.float64)
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    focal = float(max(image_shape[:2])) if image_shape is not None else 4.0 * max(x2 - x1, y2 - y1, 1.0)
    return pose_from_points(pts, ((x1 + x2) / 2, (y1 + y2) / 2), focal)
