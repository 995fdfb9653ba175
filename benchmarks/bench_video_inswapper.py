"""inswapper on video (the one edit path): frames/s of the video route against the same frames
edited as photos, on this CPU.

    python benchmarks/bench_video_inswapper.py                    # 480p, 16 frames
    python benchmarks/bench_video_inswapper.py --sizes 480,720 --frames 24 --json out.json

Weights: insightface's ``inswapper_128.onnx`` and the buffalo_l pack cannot be downloaded here,
so the engine runs the tiny random-weight ONNX twin the tests build
(``tests/_inswapper_twin.py``: the released file's interface and emap, a few convolutions
inside) through onnxruntime and the real :class:`InswapperSwapPipeline`, with dlib detecting and
standing in for the buffalo_l embedding.  The twin's network costs far less than the real 128-px
GAN, so the figures are the machinery's (decode, detect, track, smoothing, paste-back, encode),
which is what the ratio is for.

Clip: the same slow pan/zoom over a shared portrait as ``bench_video.py``. Three runs of the
same decoded frames, alternated, fastest kept (a shared CPU is noisy):

* **video**: ``VideoEditPipeline(pipe.job(...))`` on the clip (decode → detect → track → smooth →
  the job's edit and paste → judge once a second → encode → MP4), watermark and C2PA off;
* **photos**: ``pipe.run_job(job, frame)`` on every decoded frame — the photo route, judge included;
* **bare**: detect + the job's edit + paste on every decoded frame (no judge, no I/O).
"""

from __future__ import annotations

import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import _common as C

REPO = C.REPO
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "video"))

SIZES = {480: (854, 480), 720: (1280, 720)}


def main() -> int:
    p = C.make_parser(__doc__)
    p.add_argument("--sizes", default="480", help="comma-separated heights (480, 720)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    C.add_output_args(p)
    args = p.parse_args()
    C.setup_logging(args.verbose)

    from _inswapper_twin import inswapper_twin
    from _video_helpers import pan_zoom_frames, write_clip

    from facegen.io import load_image
    from facegen.provenance import Provenance
    from facegen.video import container as vc
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings

    faces = REPO.parent / "shared" / "faces"
    off = Provenance(watermark=False, c2pa=False)
    results: dict[str, object] = {"frames": args.frames, "weights": "tiny random inswapper twin + dlib"}
    print(C.versions())
    print(f"inswapper twin, {args.frames} frames at {args.fps} fps, CPU\n")
    print("| size | video frames/s | photos frames/s | bare frames/s | video/photos time | video/bare time |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pipe = inswapper_twin(folder / "models")
        job = pipe.job([str(faces / "biden_1.jpg")], consent=True)
        portrait = load_image(faces / "obama_1.jpg")[0:580, 0:910]
        for h in [int(x) for x in args.sizes.split(",")]:
            clip = write_clip(folder / f"clip-{h}.mp4", pan_zoom_frames(portrait, args.frames, SIZES[h]),
                              Fraction(args.fps))
            frames = [f.rgb for f in vc.read_frames(vc.probe(clip))]
            pipe.run_job(job, frames[0], 1, progress=False)            # warm: sessions, judge, detector
            video, photos, bare = [], [], []
            for r in range(args.rounds):
                t0 = time.perf_counter()
                res = VideoEditPipeline(job, VideoSettings())(clip, folder / f"out-{h}-{r}.mp4", seed=1,
                                                             provenance=off, progress=False)
                video.append((time.perf_counter() - t0) / res.frames)
                t0 = time.perf_counter()
                for rgb in frames:
                    pipe.run_job(job, rgb, 1, progress=False)
                photos.append((time.perf_counter() - t0) / len(frames))
                t0 = time.perf_counter()
                for rgb in frames:
                    out = rgb.copy()
                    for f in pipe.find_faces(rgb, "largest"):
                        out = job.paste(out, job.edit(out, job.plan_face(rgb, f, 0), [1]), f)
                bare.append((time.perf_counter() - t0) / len(frames))
            v, ph, b = min(video), min(photos), min(bare)
            print(f"| {SIZES[h][0]}x{h} | {1 / v:.2f} | {1 / ph:.2f} | {1 / b:.2f} | ×{v / ph:.2f} | ×{v / b:.2f} |")
            results[str(h)] = {"video_s_per_frame": v, "photos_s_per_frame": ph, "bare_s_per_frame": b,
                               "timings_per_frame_s": {k: t / res.frames for k, t in res.timings.items()},
                               "tracks": len(res.tracks)}
    print()
    for h, e in results.items():
        if isinstance(e, dict):
            print(f"{h}p video time per frame: " + ", ".join(f"{k} {1e3 * t:.0f} ms"
                                                              for k, t in e["timings_per_frame_s"].items()))
    if args.json:
        C.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
