"""What a video may be, checked before any model loads: a real video stream, not empty, within
the configured length and frame size, and a size that H.264 4:2:0 can hold.

==========================  ===============================  ==========================
limit                       environment variable             default
==========================  ===============================  ==========================
clip length (seconds)       ``FACEGEN_MAX_VIDEO_SECONDS``    1800 (30 min)
frame size (pixels)         ``FACEGEN_MAX_VIDEO_PIXELS``     8_294_400 (3840x2160, 4K)
file size (bytes)           ``FACEGEN_MAX_VIDEO_BYTES``      8 GiB
frames                      ``FACEGEN_MAX_VIDEO_FRAMES``     108_000 (30 min at 60 fps)
==========================  ===============================  ==========================

The frame size is checked on the container's header, before any frame is decoded. The web app
uses fixed, tighter bounds (:data:`APP_LIMITS`: 60 s, 100 MB, 1920x1080, 1800 frames and
1800 Full-HD frames' worth of pixels); its messages say so instead of naming a variable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from facegen.errors import BadVideoError
from facegen.limits import env_limit

logger = logging.getLogger(__name__)

MAX_SECONDS_ENV = "FACEGEN_MAX_VIDEO_SECONDS"
MAX_PIXELS_ENV = "FACEGEN_MAX_VIDEO_PIXELS"
MAX_BYTES_ENV = "FACEGEN_MAX_VIDEO_BYTES"
MAX_FRAMES_ENV = "FACEGEN_MAX_VIDEO_FRAMES"


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on one input clip (``None``: the environment's, else the defaults above)."""

    max_seconds: float = 1800.0
    max_pixels: int = 3840 * 2160
    max_bytes: int = 8 << 30
    max_frames: int = 108_000
    #: frames x pixels per frame (the work of one job); None: max_frames x max_pixels
    max_frame_pixels: int | None = None
    #: who set these bounds, named in every message: environment variables, or a fixed service limit
    source: str = "env"

    @classmethod
    def from_env(cls) -> "VideoLimits":
        d = cls()
        return cls(max_seconds=float(env_limit(MAX_SECONDS_ENV, int(d.max_seconds))),
                   max_pixels=env_limit(MAX_PIXELS_ENV, d.max_pixels),
                   max_bytes=env_limit(MAX_BYTES_ENV, d.max_bytes),
                   max_frames=env_limit(MAX_FRAMES_ENV, d.max_frames))

    def how_to_raise(self, env: str) -> str:
        """What governs a limit: the environment variable, or the service's fixed bound."""
        return f"raise it with {env}" if self.source == "env" else f"a fixed limit of {self.source}"


#: the demo's bounds (``facegen serve``): 60 s, 100 MB, Full HD, 1800 frames (a 1000 fps clip of
#: 3 s would otherwise hold the only job slot for hours)
APP_LIMITS = VideoLimits(max_seconds=60.0, max_pixels=1920 * 1080, max_bytes=100 * 1000 * 1000, max_frames=1800,
                         max_frame_pixels=1800 * 1920 * 1080, source="the web app")


def check_frame_size(name: str, width: int, height: int, limits: VideoLimits | None = None) -> None:
    """The frame size against the limit: called on the header, before any frame is decoded."""
    limits = limits or VideoLimits.from_env()
    if width * height > limits.max_pixels:
        raise BadVideoError(f"{name}: frames of {width}x{height} are over the limit of "
                            f"{limits.max_pixels:,} pixels ({limits.how_to_raise(MAX_PIXELS_ENV)})")


def check_video(info: Any, limits: VideoLimits | None = None) -> None:
    """Raise :class:`BadVideoError` (one line) for a clip facegen cannot edit faithfully."""
    limits = limits or VideoLimits.from_env()
    name = info.path
    if info.size_bytes > limits.max_bytes:
        raise BadVideoError(f"{name}: {info.size_bytes / 1e6:.1f} MB is over the limit of "
                            f"{limits.max_bytes / 1e6:.0f} MB ({limits.how_to_raise(MAX_BYTES_ENV)})")
    if info.width <= 0 or info.height <= 0:
        raise BadVideoError(f"{name}: the video stream has no frame size")
    check_frame_size(name, info.width, info.height, limits)
    if info.frames > limits.max_frames:
        raise BadVideoError(f"{name}: {info.frames:,} frames are over the limit of {limits.max_frames:,} "
                            f"({limits.how_to_raise(MAX_FRAMES_ENV)}; or cut it with --start/--end)")
    work = limits.max_frame_pixels if limits.max_frame_pixels is not None else limits.max_frames * limits.max_pixels
    if info.frames * info.width * info.height > work:
        raise BadVideoError(f"{name}: {info.frames:,} frames of {info.width}x{info.height} are more work than "
                            f"one job may take ({work:,} frame pixels, {limits.how_to_raise(MAX_FRAMES_ENV)})")
    if info.width % 2 or info.height % 2:
        raise BadVideoError(f"{name}: {info.width}x{info.height} has an odd side; H.264 4:2:0 output needs "
                            "even sides (crop or scale the clip by one pixel first)")
    if info.frames <= 0 or info.duration <= 0:
        raise BadVideoError(f"{name}: the video stream has no frames (0-length clip)")
    if info.duration > limits.max_seconds:
        raise BadVideoError(f"{name}: {info.duration:.0f} s is over the limit of {limits.max_seconds:.0f} s "
                            f"(cut it with --start/--end; {limits.how_to_raise(MAX_SECONDS_ENV)})")
    if not info.fps or info.fps <= 0 or info.fps > 1000:
        raise BadVideoError(f"{name}: frame rate {info.fps} cannot be used")


def frame_range(info: Any, start: float | None = None, end: float | None = None,
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
