"""bench_provenance's video parts (issue 26 items 4 and 5): marked clips cut into 1-second slices
and re-encoded, and the frames of unmarked clips for the false-positive set.

Clips: a pan/zoom over each real photo (the clip maker of tests/video), encoded at CRF 18.
The marked output is what facegen's video writer makes of it: every decoded frame marked by
:func:`facegen.video.provenance.mark_frames` (``MARK_BATCH`` frames per call, as the frame loop does) and
encoded by :class:`facegen.video.container.SegmentWriter` with the output's default
:class:`~facegen.video.container.EncodeSettings` (CRF 18, a keyframe every second). A trial cuts
the frames of one second from a random start, re-encodes them with libx264 at CRF 28 and reads
the slice as ``facegen inspect`` does (:func:`facegen.video.provenance.read_video_watermark`).
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "video"))

from _video_helpers import decoded, pan_zoom_frames, write_clip  # noqa: E402  (tests/video: the tests' clip maker)

#: frame sizes of the clips, in turn (w, h)
CLIP_SIZES = ((640, 360), (480, 480), (854, 480), (320, 240))
FPS = Fraction(15)


def source_clip(folder: Path, rgb: np.ndarray, size: tuple[int, int], frames: int, name: str, crf: int = 18
                ) -> Path:
    """A pan/zoom clip over ``rgb`` (tests/video's clip maker), H.264 at ``crf``."""
    return write_clip(folder / f"{name}.mp4", pan_zoom_frames(rgb, frames, size, zoom=0.15, pan=0.1), FPS,
                      audio=False, crf=crf)


def marked_output(src: Path, dst: Path) -> Path:
    """``src``'s frames marked ``MARK_BATCH`` at a time (as the frame loop does) and written by
    facegen's output encoder."""
    from facegen.video.container import EncodeSettings, SegmentWriter, probe, read_frames  # noqa: PLC0415
    from facegen.video.pipeline import MARK_BATCH  # noqa: PLC0415
    from facegen.video.provenance import mark_frames  # noqa: PLC0415

    info = probe(src)
    writer = SegmentWriter(dst, info, EncodeSettings())
    batch: list = []

    def flush() -> None:
        for (pts, _), rgb in zip(batch, mark_frames([b[1] for b in batch])):
            writer.write(pts, rgb)
        batch.clear()

    for frame in read_frames(info):
        batch.append((frame.pts, frame.rgb))
        if len(batch) == MARK_BATCH:
            flush()
    if batch:
        flush()
    writer.close()
    return dst


def cut_reencode(frames: list[np.ndarray], start: int, dst: Path, crf: int = 28) -> Path:
    """Frames ``start`` .. ``start`` + one second re-encoded with libx264 at ``crf``."""
    return write_clip(dst, frames[start:start + int(FPS)], FPS, audio=False, crf=crf, preset="veryfast")


def slice_trials(photos: list[np.ndarray], clips: int, seconds: float, trials: int, seed: int = 4) -> dict:
    """``trials`` 1-second slices cut at random from each of ``clips`` marked clips of ``seconds``."""
    from facegen.video.provenance import read_video_watermark  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    out = {"clips": 0, "trials": 0, "found": 0, "frames_found": 0, "frames_read": 0, "misses": []}
    n = int(round(float(FPS) * seconds))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for c in range(clips):
            size = CLIP_SIZES[c % len(CLIP_SIZES)]
            src = source_clip(d, photos[c % len(photos)], size, n, f"src{c}")
            frames = decoded(marked_output(src, d / f"out{c}.mp4"))
            out["clips"] += 1
            for t in range(trials):
                start = int(rng.integers(0, len(frames) - int(FPS) + 1))
                got = read_video_watermark(cut_reencode(frames, start, d / f"cut{c}-{t}.mp4"))
                out["trials"] += 1
                out["found"] += bool(got["found"])
                out["frames_found"] += got.get("frames_found", 0)
                out["frames_read"] += got.get("frames_read", 0)
                if not got["found"]:
                    out["misses"].append({"clip": c, "size": size, "start": start, "p_value": got.get("p_value")})
            print(f"  video slices: clip {c + 1}/{clips} {size[0]}x{size[1]}: {out['found']}/{out['trials']} "
                  f"found so far", flush=True)
    out["detected"] = out["found"] / max(1, out["trials"])
    return out


def unmarked_frames(photos: list[np.ndarray], per_clip: int = 10, frames: int = 30):
    """Every third frame of an unmarked pan/zoom clip of each photo (``per_clip`` of ``frames``),
    H.264-encoded at CRF 23 and decoded: the false-positive set's video frames."""
    with tempfile.TemporaryDirectory() as tmp:
        for c, rgb in enumerate(photos):
            clip = source_clip(Path(tmp), rgb, CLIP_SIZES[c % len(CLIP_SIZES)], frames, f"u{c}", crf=23)
            yield from decoded(clip)[:: max(1, frames // per_clip)][:per_clip]
