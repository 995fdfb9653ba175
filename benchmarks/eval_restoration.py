"""Evaluate face restoration: degrade clean photos, restore them, compare with the originals.

For each photo and degradation level it prints PSNR/SSIM of the degraded and the restored
image against the clean original, and the ID similarity (dlib descriptor, independent of
the conditioning encoder for real presets) of each to the original.  The reference run in
the same process is "do nothing" (the degraded input itself): gains are restored − degraded.

    python benchmarks/eval_restoration.py --model tiny [--photos DIR] [--levels 0.3 0.6] [--steps 8]

With --model tiny (random weights) the restored face is noise: expect negative gains: that
run only proves the evaluation works. Real numbers need a real preset's weights.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from _common import add_output_args, make_parser, setup_logging, write_json  # also puts the checkout on sys.path
from facegen.examples import example_photo
from facegen.errors import FacegenError
from facegen.id.encoders import embed_image, get_analyzer, similarity
from facegen.io import load_image
from facegen.paths import ModelAccess
from facegen.pipelines.degrade import degrade_level
from facegen.pipelines.restoration import FaceRestorationPipeline
from facegen.quality import evaluate_restoration

logger = logging.getLogger("eval_restoration")


def _photos(folder: str | None) -> list[Path]:
    if folder:
        return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    shared = Path(__file__).resolve().parents[2] / "shared" / "faces"
    if shared.is_dir():
        return sorted(p for p in shared.iterdir() if p.suffix.lower() in (".jpg", ".png") and "group" not in p.name)
    return [example_photo("tom_hanks")]


def main(argv: list[str] | None = None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--photos", default=None)
    p.add_argument("--levels", type=float, nargs="+", default=[0.3, 0.6])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--max-side", type=int, default=512, help="downscale photos first (CPU time)")
    p.add_argument("--accept-license", action="store_true")
    add_output_args(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    pipe = FaceRestorationPipeline.from_preset(args.model, access=ModelAccess(accept_license=args.accept_license))
    dlib_enc = get_analyzer("dlib-resnet-v1")

    def id_sim(a: np.ndarray, b: np.ndarray) -> float:
        try:
            return similarity(embed_image(a, dlib_enc)[0], embed_image(b, dlib_enc)[0])
        except FacegenError:
            return float("nan")

    rows = []
    import cv2  # noqa: PLC0415
    for path in _photos(args.photos):
        clean = load_image(path)
        s = min(1.0, args.max_side / max(clean.shape[:2]))
        if s < 1:
            clean = cv2.resize(clean, (round(clean.shape[1] * s), round(clean.shape[0] * s)), interpolation=cv2.INTER_AREA)
        for level in args.levels:
            bad = degrade_level(clean, level, seed=0)
            t0 = time.perf_counter()
            try:
                out = pipe(bad, consent=True, seed=0, num_inference_steps=args.steps, progress=False)
            except FacegenError as exc:
                logger.warning("%s at level %.2f: %s", path.name, level, exc)
                continue
            dt = time.perf_counter() - t0
            rec = evaluate_restoration(out.rgb(0), clean, id_sim, degraded=bad)
            rec["id_similarity_degraded"] = id_sim(bad, clean)
            rows.append({"photo": path.name, "level": level, "seconds": dt, **rec})
    print(f"{'photo':28s} {'lvl':>4} {'PSNR in':>8} {'PSNR out':>9} {'SSIM in':>8} {'SSIM out':>9} "
          f"{'ID in':>6} {'ID out':>7} {'s':>5}")
    for r in rows:
        print(f"{r['photo']:28s} {r['level']:4.2f} {r['psnr_degraded']:8.2f} {r['psnr']:9.2f} {r['ssim_degraded']:8.3f} "
              f"{r['ssim']:9.3f} {r['id_similarity_degraded']:6.3f} {r['id_similarity']:7.3f} {r['seconds']:5.1f}")
    if rows:
        gain = np.mean([r["psnr_gain"] for r in rows])
        print(f"mean PSNR gain over the degraded input (reference): {gain:+.2f} dB ({args.model})")
    if args.json:
        write_json(args.json, rows)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
