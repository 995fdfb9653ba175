"""The video side of ``facegen swap | restore | age``: the same commands, a video in.

    facegen swap --model tiny --source me.jpg --target clip.mp4 --out out.mp4 --consent
    facegen swap --engine inswapper --source me.jpg --target clip.mp4 --out out.mp4 --consent --accept-license
    facegen restore --model tiny --image old.mov --out restored.mp4 --consent --start 5 --end 15
    facegen age --model tiny-faceid --image clip.webm --age 70 --from-age 35 --out old.mp4 --consent

The job is the photo command's own (``facegen.cli.jobs.make_job``): every engine and option of
the photo command works on a video. A video is recognised by probing the container (not by its suffix). Everything is checked
before any model loads (consent, the clip and its limits, the output name, the photos, the
provenance options). The output is an MP4 (H.264 + the input's audio, copied); an interrupted
run continues from its last finished segment when the same command is run again.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
OUT_SUFFIXES = {".mp4", ".m4v", ".mov"}


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The options that apply when the input is a video."""
    from facegen.cli.options import bounded_int, finite_float  # noqa: PLC0415
    from facegen.video.container import PRESETS  # noqa: PLC0415

    g = p.add_argument_group("video (when the input is a video file: MP4, MOV, MKV, WebM in; MP4 out)")
    g.add_argument("--start", type=finite_float(0), default=None, metavar="S", help="first second to process")
    g.add_argument("--end", type=finite_float(0, lo_open=True), default=None, metavar="S",
                   help="stop before this second")
    g.add_argument("--max-frames", type=bounded_int(1), default=None, metavar="N", help="at most N frames (previews)")
    g.add_argument("--crf", type=bounded_int(0, 51), default=18, help="H.264 quality, lower is better (default 18)")
    g.add_argument("--preset", dest="x264_preset", default="veryfast", choices=PRESETS,
                   help="x264 speed/size trade-off (default veryfast)")
    g.add_argument("--segment-seconds", type=finite_float(0.1, 3600), default=2.0, metavar="S",
                   help="resume granularity: the clip is committed every S seconds (default 2)")
    g.add_argument("--temporal", type=finite_float(0, 0.95), default=0.35, metavar="W",
                   help="weight of the previous frame's result in each frame's model input (default 0.35)")
    g.add_argument("--no-smoothing", action="store_true", help="no landmark filter and no mask averaging")


def video_input(args: argparse.Namespace, command: str) -> str | None:
    """The command's input path when it is a video (probed), else None."""
    from facegen.video.container import is_video  # noqa: PLC0415

    path = getattr(args, "target", None) if command == "swap" else getattr(args, "image", None)
    if path is None:
        return None
    if is_video(path) or Path(path).suffix.lower() in VIDEO_SUFFIXES or \
            Path(args.out).suffix.lower() in OUT_SUFFIXES:
        return str(path)
    return None


def maybe_run_video(args: argparse.Namespace, command: str) -> int | None:
    """Run ``command`` (swap, restore, age) on a video and return its exit code, or None when
    the input is not a video."""
    path = video_input(args, command)
    return None if path is None else run_video(args, command, path)


def _check_out(args: argparse.Namespace, inputs: list[str]) -> Path:
    from facegen.cli.checks import probe_writable, refuse_input_as_output  # noqa: PLC0415

    out = Path(args.out)
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise InvalidArgumentError(f"--out {out}: a video is written as MP4: use a .mp4 file name")
    if out.is_dir():
        raise InvalidArgumentError(f"--out {out} is a folder; give a file name")
    refuse_input_as_output(out, inputs)
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise InvalidArgumentError(f"--out {out} already exists; give another name, or --overwrite to replace it")
    probe_writable(out.parent if str(out.parent) else Path("."))
    return out


def run_video(args: argparse.Namespace, command: str, path: str) -> int:
    from facegen.cli.checks import check_inputs_readable, check_steps  # noqa: PLC0415
    from facegen.cli.options import provenance_from_args  # noqa: PLC0415
    from facegen.pipelines._edit_base import require_consent  # noqa: PLC0415
    from facegen.video.container import EncodeSettings, probe  # noqa: PLC0415
    from facegen.video.limits import check_video, frame_range  # noqa: PLC0415
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings  # noqa: PLC0415

    require_consent(args.consent, {"swap": "face swap", "age": "aging", "restore": "restoration"}[command])
    if command == "age" and args.from_age is None:
        raise InvalidArgumentError("the current age is needed: give --from-age N "
                                   "(no age-estimation model is installed)")
    check_steps(args.steps)
    info = probe(path)                                  # not a video, no video stream, empty: one line
    check_video(info)
    frame_range(info, args.start, args.end, args.max_frames)
    photos = [("--source", s) for s in getattr(args, "sources", None) or []]
    photos += [("--reference", r) for r in (getattr(args, "references", None) or [])]
    if command == "restore" and args.reference:
        photos.append(("--reference", args.reference))
    out = _check_out(args, [path] + [p for _, p in photos])
    check_inputs_readable(photos)
    prov = provenance_from_args(args)
    if args.model is None and getattr(args, "engine", "diffusion") == "diffusion":
        from facegen.models.auxiliary import SWAP_ENGINE_RULE  # noqa: PLC0415
        raise InvalidArgumentError(f"no --model given ({SWAP_ENGINE_RULE})")
    t0 = time.perf_counter()
    from facegen.cli.jobs import make_job  # noqa: PLC0415
    job = make_job(args, command)
    settings = VideoSettings(encode=EncodeSettings(crf=args.crf, preset=args.x264_preset),
                             segment_seconds=args.segment_seconds, smoothing=not args.no_smoothing,
                             temporal=args.temporal, start=args.start, end=args.end, max_frames=args.max_frames)
    result = VideoEditPipeline(job, settings)(path, out, seed=args.seed, provenance=prov,
                                              inputs=[p for _, p in photos], progress=not args.no_progress)
    print(summary(result, time.perf_counter() - t0))
    return 0


def summary(result: Any, seconds: float) -> str:
    """What the command prints: the file, frames, seed, stability and each track's similarity."""
    stab = result.stability
    ratio = "-" if stab.get("ratio") is None else f"{stab['ratio']:.2f}x the input's"
    lines = [f"{result.path}  frames={result.frames}  fps={result.fps}  seed={result.seed}  "
             f"face-region change per frame={stab.get('output', '-')} ({ratio})  ({seconds:.1f} s"
             + (f", resumed after {result.resumed_segments} segment(s)" if result.resumed_segments else "") + ")"]
    for t in result.tracks:
        sim = t.get("id_similarity")
        what = "edited" if t["edited"] else "left as it is"
        lines.append(f"  track {t['track']} (frames {t['first_frame']}-{t['last_frame']}): {what}"
                     + (f", seeds={t['seeds']}, id_similarity={'-' if sim is None else f'{sim:.3f}'}"
                        if t["edited"] else ""))
    return "\n".join(lines)


def inspect_any(path: str, trust: Any = ()) -> dict[str, Any]:
    """``facegen inspect``'s report of an image, a dataset seal or a video (probed)."""
    from facegen.provenance.inspect import trust_pems, inspect_file  # noqa: PLC0415
    from facegen.video.container import is_video  # noqa: PLC0415

    if Path(path).suffix.lower() != ".zip" and is_video(path):
        from facegen.video.provenance import inspect_video  # noqa: PLC0415
        return inspect_video(path, trust_pems(trust))
    return inspect_file(path, trust=trust)
