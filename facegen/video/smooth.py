"""Temporal smoothing per track: a One-Euro filter on the landmarks and box (so the aligned crop
does not jitter), an exponential average of the paste mask, and the blend of the previous
frame's result into the next frame's model input (so the face does not boil).

One-Euro (Casiez, Roussel & Vogel, CHI 2012): a low-pass filter whose cut-off rises with the
signal's speed — steady faces are smoothed hard, fast head turns follow with little lag.
Positions are filtered in units of the face's width when the track starts (fixed: detector
boxes jump in size from frame to frame), so the settings do not depend on the resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facegen.faces.types import Face


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuro:
    """One-Euro filter over arrays: ``min_cutoff`` (Hz) sets the smoothing of a still signal,
    ``beta`` how fast the cut-off opens with speed (units per second)."""

    min_cutoff: float = 1.5
    beta: float = 0.5
    d_cutoff: float = 1.0
    x: np.ndarray | None = None
    dx: np.ndarray | None = None
    t: float | None = None

    def __call__(self, value: np.ndarray, t: float) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = value.copy(), np.zeros_like(value), float(t)
            return value
        dt = float(t - self.t)
        dx = (value - self.x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        a = 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))
        self.x = a * value + (1 - a) * self.x
        self.t = float(t)
        return self.x.copy()

    def state(self) -> dict[str, np.ndarray]:
        if self.x is None:
            return {}
        return {"x": self.x, "dx": self.dx, "t": np.array([self.t], np.float64)}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        if "x" in arrays:
            self.x, self.dx, self.t = arrays["x"], arrays["dx"], float(arrays["t"][0])


@dataclass
class FaceSmoother:
    """Smooths one track's face: keypoints and box through a One-Euro filter (in face widths)."""

    filter: OneEuro = field(default_factory=OneEuro)
    scale: float | None = None

    def __call__(self, face: Face, t: float) -> Face:
        if self.scale is None:        # the first face width: fixed (detector boxes jump in size)
            self.scale = max(face.width, 1.0)
        scale = self.scale
        flat = np.concatenate([np.asarray(face.kps, np.float64).reshape(-1), np.asarray(face.bbox, np.float64)])
        out = self.filter(flat / scale, t) * scale
        kps = out[:-4].reshape(-1, 2).astype(np.float32)
        lm = face.landmarks68
        if lm is not None:                      # move the 68 points with the 5-point correction
            lm = (np.asarray(lm, np.float32) + (kps - face.kps).mean(axis=0)).astype(np.float32)
        return Face(out[-4:].astype(np.float32), kps, face.score, lm, dict(face.extra))


def blend_mask(mask: np.ndarray, previous: np.ndarray | None, weight: float) -> np.ndarray:
    """Exponential average of the paste mask over time (``weight`` of the previous one)."""
    if previous is None or weight <= 0 or previous.shape != mask.shape:
        return mask
    return (1.0 - weight) * mask + weight * previous.astype(mask.dtype)


def warp_previous(crop: np.ndarray, m_prev: np.ndarray, m_now: np.ndarray) -> np.ndarray:
    """The previous frame's crop (made with image→crop matrix ``m_prev``) in this frame's crop
    frame (``m_now``): ``m_now ∘ m_prev⁻¹``."""
    a = np.vstack([np.asarray(m_now, np.float64), [0, 0, 1]]) @ np.linalg.inv(
        np.vstack([np.asarray(m_prev, np.float64), [0, 0, 1]]))
    s = crop.shape[0]
    return cv2.warpAffine(crop, a[:2], (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def guided_init(current: np.ndarray, previous_out: np.ndarray | None, weight: float) -> np.ndarray | None:
    """The model's input for this frame: its own crop with ``weight`` of the previous frame's
    result (already warped into this crop frame) blended in; None when there is nothing to blend."""
    if previous_out is None or weight <= 0:
        return None
    mix = (1.0 - weight) * current.astype(np.float32) + weight * previous_out.astype(np.float32)
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def region_change(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> tuple[float, int]:
    """Sum of |a − b| (mean over channels) inside the boolean ``region``, and its pixel count."""
    n = int(region.sum())
    if n == 0:
        return 0.0, 0
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
    return float(d[region].sum()), n


def settings_dict(smoothing: bool, temporal: float, mask_weight: float, carry: float) -> dict[str, Any]:
    return {"landmark_filter": "one-euro" if smoothing else "off", "temporal_guidance": temporal,
            "mask_average": mask_weight if smoothing else 0.0, "carry": carry}
