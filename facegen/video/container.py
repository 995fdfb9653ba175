"""Video files in and out with PyAV: probe, decode frames one at a time, encode segments, and
assemble the final MP4 (video packets of the finished segments, the input's audio packets
copied untouched, facegen's metadata tags).

Faithful by construction: every output frame keeps its input timestamp (same time base, so the
exact rational frame rate, the frame count and any variable timing survive), the display
rotation is copied, and audio is re-muxed packet by packet (bit-exact). Frames are handed to the
pipeline *upright* (the rotation applied with an exact ``np.rot90``) and turned back before
encoding, so faces are detected the right way up and pixels are not resampled.

Encoding: H.264 (libx264) yuv420p, ``crf``/``preset`` settable, a keyframe about every second
(``g``), no B-frames (so independently encoded segments concatenate with monotonic timestamps),
a fixed thread count (x264's output depends on it: fixed, the same run gives the same bytes).
"""

from __future__ import annotations

import heapq
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from facegen.errors import MissingDependencyError
from facegen.errors import BadVideoError
from facegen.video.limits import check_frame_size

logger = logging.getLogger(__name__)

#: demuxers that read still images (PyAV opens a JPEG as a 1-frame "video"): not videos
_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "apng", "webp")
#: audio codecs an MP4 holds as they are (others are re-encoded to AAC, with a warning)
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _av() -> Any:
    try:
        import av  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("av", "video", "video files") from None
    return av


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found: the first video stream and the file's audio streams."""

    path: str
    format: str
    codec: str
    width: int                  # as stored (before rotation)
    height: int
    fps: Fraction               # exact average rate, e.g. 30000/1001
    time_base: Fraction
    frames: int                 # from the header, else counted from the packets
    duration: float             # seconds
    rotation: int               # display rotation, degrees counter-clockwise (0, 90, 180, 270)
    audio: tuple[str, ...]      # codec of each audio stream
    size_bytes: int

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, after the rotation."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


def open_container(path: str | os.PathLike[str]) -> Any:
    av = _av()
    p = Path(path)
    if not p.is_file():
        raise BadVideoError(f"{p}: no such file" if not p.exists() else f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise BadVideoError(f"{p}: the file is empty (0 bytes)")
    try:
        return av.open(str(p), "r")
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise BadVideoError(f"{p}: not a video file FFmpeg can read ({_one_line(exc)})") from None


def _image_demuxer(name: str) -> bool:
    return any(name == d or name.endswith(d) for d in _IMAGE_DEMUXERS)


def is_video(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a readable file whose container holds a video stream (probed, not
    guessed from the suffix; still images and animated GIFs are not videos)."""
    try:
        with open_container(path) as c:
            return bool(c.streams.video) and not _image_demuxer(c.format.name)
    except (BadVideoError, MissingDependencyError):
        return False


def _rotation(value: Any) -> int:
    try:
        angle = float(value or 0)
    except (TypeError, ValueError):
        return 0
    if not np.isfinite(angle):
        return 0
    return int(round(angle / 90.0)) * 90 % 360


def probe(path: str | os.PathLike[str], limits: Any = None) -> VideoInfo:
    """Read the container header and the first frame; :class:`BadVideoError` when it is not a
    usable video. The header's frame size is checked against ``limits`` (a
    :class:`~facegen.video.limits.VideoLimits`; ``None``: the environment's) before any decoding."""
    av = _av()
    with open_container(path) as c:
        if _image_demuxer(c.format.name):
            raise BadVideoError(f"{path}: a still image ({c.format.name}), not a video")
        if not c.streams.video:
            kinds = ", ".join(s.type for s in c.streams) or "nothing"
            raise BadVideoError(f"{path}: no video stream (the file holds {kinds})")
        vs = c.streams.video[0]
        check_frame_size(str(path), int(vs.width or 0), int(vs.height or 0), limits)   # before decoding
        fps = Fraction(vs.average_rate or vs.guessed_rate or vs.base_rate or 0)
        tb = Fraction(vs.time_base or Fraction(1, 90000))
        frames = int(vs.frames or 0)
        if vs.duration:
            duration = float(vs.duration * tb)
        else:
            duration = float(c.duration or 0) / 1e6
        rotation = 0
        try:
            if frames == 0:          # MKV/WebM headers carry no count: count the packets (no decoding)
                frames = sum(1 for pkt in c.demux(vs) if pkt.size and pkt.pts is not None)
                c.seek(0)
            first = next(iter(c.decode(vs)), None)
        except av.FFmpegError as exc:
            raise BadVideoError(f"{path}: the video stream cannot be decoded ({_one_line(exc)})") from None
        if first is None:
            frames = 0
        else:
            rotation = _rotation(getattr(first, "rotation", 0))
        if not duration and fps and frames:
            duration = float(frames / fps)
        return VideoInfo(path=str(path), format=c.format.name, codec=vs.codec_context.name, width=int(vs.width),
                         height=int(vs.height), fps=fps, time_base=tb, frames=frames, duration=duration,
                         rotation=rotation, audio=tuple(s.codec_context.name for s in c.streams.audio),
                         size_bytes=Path(path).stat().st_size)


def upright(stored: np.ndarray, rotation: int) -> np.ndarray:
    """The frame as displayed (counter-clockwise by ``rotation``), exact."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(stored, k)) if k else stored


def stored(upright_rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The inverse of :func:`upright`."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(upright_rgb, -k)) if k else upright_rgb


@dataclass
class Frame:
    pts: int
    time: float
    rgb: np.ndarray             # upright RGB uint8


@dataclass
class DecodeReport:
    decoded: int = 0
    corrupt: int = 0
    vfr: bool = False
    last_pts: int | None = None
    deltas: set[int] = field(default_factory=set)


def read_frames(info: VideoInfo, *, start: float | None = None, end: float | None = None,
                from_pts: int | None = None, report: DecodeReport | None = None) -> Iterator[Frame]:
    """Frames in display order, upright, from ``start`` (s) or ``from_pts`` (a resume point)
    to before ``end`` (s). Packets that fail to decode are skipped and counted in ``report``."""
    av = _av()
    report = report if report is not None else DecodeReport()
    tb = info.time_base
    with open_container(info.path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        target = from_pts
        if target is None and start:
            target = int(Fraction(start).limit_denominator(1_000_000) / tb)
        if target:
            c.seek(int(target), stream=vs, backward=True, any_frame=False)
        packets = c.demux(vs)
        while True:
            try:
                pkt = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                report.corrupt += 1
                logger.warning("%s: demuxing stopped at a damaged stretch (%s)", info.path, _one_line(exc))
                break
            try:
                frames = pkt.decode()
            except av.FFmpegError:
                report.corrupt += 1
                continue
            for f in frames:
                if f.pts is None or (target is not None and f.pts < target):
                    continue
                t = float(f.pts * tb)
                if end is not None and t >= end - 1e-9:
                    return
                if report.last_pts is not None:
                    report.deltas.add(int(f.pts - report.last_pts))
                    report.vfr = report.vfr or len(report.deltas) > 2
                report.last_pts = int(f.pts)
                report.decoded += 1
                yield Frame(int(f.pts), t, upright(f.to_ndarray(format="rgb24"), info.rotation))


@dataclass(frozen=True)
class EncodeSettings:
    """H.264 settings of the output: quality (``crf``, lower is better, 18 ≈ visually lossless),
    speed (``preset``), a keyframe every ``keyframe_seconds``, and x264's thread count (fixed:
    the bytes depend on it)."""

    crf: int = 18
    preset: str = "veryfast"
    keyframe_seconds: float = 1.0
    threads: int = 2

    def gop(self, fps: Fraction) -> int:
        return max(1, int(round(float(fps) * self.keyframe_seconds)))


def _mp4_options(info: VideoInfo) -> dict[str, str]:
    """The MP4 movie timescale = the video time base, so edit lists (a clip that does not start
    at 0, audio priming) keep exact timestamps (the default 1/1000 rounds them)."""
    tb = Fraction(info.time_base)
    return {"movie_timescale": str(tb.denominator)} if tb.numerator == 1 and tb.denominator < 2**31 else {}


class SegmentWriter:
    """Encodes frames (pts, upright RGB) one at a time into a video-only MP4 at ``path``, with
    the input's time base, so each frame keeps its timestamp; :meth:`close` flushes it."""

    def __init__(self, path: Path, info: VideoInfo, settings: EncodeSettings) -> None:
        av = _av()
        self.info = info
        self.frames = 0
        self.container = av.open(str(path), "w", format="mp4", options=_mp4_options(info))
        vs = self.container.add_stream("libx264", rate=info.fps)
        vs.width, vs.height, vs.pix_fmt = info.width, info.height, "yuv420p"
        vs.time_base = info.time_base
        vs.codec_context.time_base = info.time_base
        vs.options = {"crf": str(int(settings.crf)), "preset": settings.preset, "g": str(settings.gop(info.fps)),
                      "bf": "0", "threads": str(int(settings.threads))}
        self.stream = vs

    def write(self, pts: int, rgb: np.ndarray) -> None:
        vf = _av().VideoFrame.from_ndarray(stored(rgb, self.info.rotation), format="rgb24")
        vf.pts, vf.time_base = int(pts), self.info.time_base
        for pkt in self.stream.encode(vf):
            self.container.mux(pkt)
        self.frames += 1

    def close(self) -> None:
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()


def end_pts(info: VideoInfo) -> int | None:
    """The input video stream's end timestamp (start + duration), when its header says."""
    with open_container(info.path) as c:
        vs = c.streams.video[0]
        if vs.duration:
            return int((vs.start_time or 0) + vs.duration)
    return None


def nominal_duration(info: VideoInfo) -> int:
    """One frame's duration in time-base units at the average rate."""
    return max(1, int(round(1 / (info.fps * info.time_base))))


def _time(pkt: Any) -> float:
    ts = pkt.dts if pkt.dts is not None else pkt.pts
    return float(ts * pkt.time_base) if ts is not None else 0.0


def _segment_packets(paths: Sequence[Path]) -> Iterator[Any]:
    for p in paths:
        with _av().open(str(p), "r") as c:
            for pkt in c.demux(c.streams.video[0]):
                if pkt.dts is not None:
                    yield pkt


def _audio_packets(info: VideoInfo, start: float, end: float | None) -> Iterator[Any]:
    with open_container(info.path) as c:
        if not c.streams.audio:
            return
        for pkt in c.demux(*c.streams.audio):
            if pkt.dts is None:
                continue
            t = float(pkt.pts * pkt.time_base) if pkt.pts is not None else _time(pkt)
            if (start > 0 and t < start - 1e-6) or (end is not None and t >= end - 1e-6):
                continue
            yield pkt


def _with_durations(packets: Iterator[Any], last_duration: int) -> Iterator[Any]:
    """Each video packet's duration = the gap to the next one's timestamp (no B-frames: decode
    order is display order); the last one gets ``last_duration``."""
    prev = None
    for pkt in packets:
        if prev is not None:
            prev.duration = int(pkt.pts - prev.pts)
            yield prev
        prev = pkt
    if prev is not None:
        prev.duration = int(last_duration)
        yield prev


def assemble(out: Path, info: VideoInfo, segments: Sequence[Path], *, metadata: Mapping[str, str],
             last_duration: int, start: float = 0.0, end: float | None = None, shift_pts: int = 0) -> None:
    """Write the final MP4 at ``out``: the segments' video packets in order (the last frame
    lasting ``last_duration`` time-base units), the input's audio streams (packets copied
    untouched; with a cut, those inside ``[start, end)``), the display rotation and ``metadata``
    as container tags. ``shift_pts`` moves a cut clip to start at 0."""
    av = _av()
    if not segments:
        raise BadVideoError(f"{info.path}: no frames were written")
    with av.open(str(segments[0]), "r") as first, open_container(info.path) as src, \
            av.open(str(out), "w", format="mp4",
                    options={**_mp4_options(info), "movflags": "+use_metadata_tags"}) as c:
        vt = first.streams.video[0]
        vs = c.add_stream_from_template(vt)
        vs.time_base = vt.time_base
        if info.rotation:
            vs.set_display_rotation(info.rotation)
        amap = {}
        for a in src.streams.audio:
            if a.codec_context.name in MP4_AUDIO:
                amap[a.index] = c.add_stream_from_template(a)
            else:
                logger.warning("%s: audio stream %d (%s) cannot be stored in MP4 as it is and is left out",
                               info.path, a.index, a.codec_context.name)
        for k, v in metadata.items():
            c.metadata[k] = v
        shift_audio = start if shift_pts else 0.0
        video = ((_time(p), 0, p) for p in _with_durations(_segment_packets(segments), last_duration))
        audio = ((_time(p), 1, p) for p in _audio_packets(info, start, end) if p.stream.index in amap)
        for _t, kind, pkt in heapq.merge(video, audio, key=lambda x: (x[0], x[1])):
            if kind == 0:
                if shift_pts:
                    pkt.pts -= shift_pts
                    pkt.dts -= shift_pts
                pkt.stream = vs
            else:
                if shift_audio:
                    d = int(round(shift_audio / pkt.time_base))
                    pkt.pts = None if pkt.pts is None else pkt.pts - d
                    pkt.dts -= d
                pkt.stream = amap[pkt.stream.index]
            c.mux(pkt)
