"""What a video may be, checked before any model loads: a real video stream, not empty, within
the configured length and frame size, and a size that H.264 4:2:0 can hold.

==========================  ===============================  ==========================
limit                       environment variable             default
==========================  ===============================  ==========================
clip length (seconds)       ``FACEGEN_MAX_VIDEO_SECONDS``    1800 (30 min)
frame size (pixels)         ``FACEGEN_MAX_VIDEO_PIXELS``     8_294_400 (3840x2160, 4K)
file size (bytes)           ``FACEGEN_MAX_VIDEO_BYTES``      8 GiB
==========================  ===============================  ==========================

The web app uses tighter bounds (:data:`APP_LIMITS`: 60 s, 100 MB, 1920x1080).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from facegen.errors import BadVideoError
from facegen.limits import env_limit

if TYPE_CHECKING:  # pragma: no cover
    from facegen.video.container import VideoInfo

logger = logging.getLogger(__name__)

MAX_SECONDS_ENV = "FACEGEN_MAX_VIDEO_SECONDS"
MAX_PIXELS_ENV = "FACEGEN_MAX_VIDEO_PIXELS"
MAX_BYTES_ENV = "FACEGEN_MAX_VIDEO_BYTES"


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on one input clip (``None``: the environment's, else the defaults above)."""

    max_seconds: float = 1800.0
    max_pixels: int = 3840 * 2160
    max_bytes: int = 8 << 30

    @classmethod
    def from_env(cls) -> "VideoLimits":
        d = cls()
        return cls(max_seconds=float(env_limit(MAX_SECONDS_ENV, int(d.max_seconds))),
                   max_pixels=env_limit(MAX_PIXELS_ENV, d.max_pixels),
                   max_bytes=env_limit(MAX_BYTES_ENV, d.max_bytes))


#: the demo's bounds (``facegen serve``): 60 s, 100 MB, Full HD
APP_LIMITS = VideoLimits(max_seconds=60.0, max_pixels=1920 * 1080, max_bytes=100 * 1000 * 1000)


def check_video(info: "VideoInfo", limits: VideoLimits | None = None) -> None:
    """Raise :class:`BadVideoError` (one line) for a clip facegen cannot edit faithfully."""
    limits = limits or VideoLimits.from_env()
    name = info.path
    if info.size_bytes > limits.max_bytes:
        raise BadVideoError(f"{name}: {info.size_bytes / 1e6:.1f} MB is over the limit of "
                            f"{limits.max_bytes / 1e6:.0f} MB (raise it with {MAX_BYTES_ENV})")
    if info.width <= 0 or info.height <= 0:
        raise BadVideoError(f"{name}: the video stream has no frame size")
    if info.width * info.height > limits.max_pixels:
        raise BadVideoError(f"{name}: frames of {info.width}x{info.height} are over the limit of "
                            f"{limits.max_pixels:,} pixels (raise it with {MAX_PIXELS_ENV})")
    if info.width % 2 or info.height % 2:
        raise BadVideoError(f"{name}: {info.width}x{info.height} has an odd side; H.264 4:2:0 output needs "
                            "even sides (crop or scale the clip by one pixel first)")
    if info.frames <= 0 or info.duration <= 0:
        raise BadVideoError(f"{name}: the video stream has no frames (0-length clip)")
    if info.duration > limits.max_seconds:
        raise BadVideoError(f"{name}: {info.duration:.0f} s is over the limit of {limits.max_seconds:.0f} s "
                            f"(cut it with --start/--end, or raise {MAX_SECONDS_ENV})")
    if not info.fps or info.fps <= 0 or info.fps > 1000:
        raise BadVideoError(f"{name}: frame rate {info.fps} cannot be used")


def frame_range(info: "VideoInfo", start: float | None = None, end: float | None = None,
                max_frames: int | None = None) -> tuple[int, int]:
    """The ``[first, stop)`` frame indices of ``--start/--end`` (seconds) and ``--max-frames``."""
    fps = Fraction(info.fps)
    first = 0 if start is None else int(round(Fraction(start).limit_denominator(10_000) * fps))
    stop = info.frames if end is None else min(info.frames, int(round(Fraction(end).limit_denominator(10_000) * fps)))
    if start is not None and start < 0 or end is not None and end <= 0:
        raise BadVideoError("--start must be >= 0 and --end > 0 (seconds)")
    if max_frames is not None:
        if max_frames < 1:
            raise BadVideoError("--max-frames must be >= 1")
        stop = min(stop, first + int(max_frames))
    if first >= stop:
        raise BadVideoError(f"{info.path}: --start/--end select no frames (the clip has {info.frames} frames, "
                            f"{info.duration:.2f} s)")
    return first, stop
