"""Time `embed` (detect → align → embed) per photo on this machine.

Prints, for each photo size, facegen's time per image after start-up and the time of a
reference run in the same process: dlib's HOG at full resolution with one upsampling (the
face_recognition library's default), the common naive use.  Target: < 1 s per 1-MP image
on a 2-core CPU.

    python benchmarks/bench_embed.py [--photo PATH] [--repeats 5]
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from _common import add_output_args, make_parser, median_time, setup_logging  # also puts the checkout on sys.path
from facegen.examples import example_photo
from facegen.faces.dlib_backend import _hog_detector
from facegen.id.encoders import embed_image, get_analyzer
from facegen.io import load_image

logger = logging.getLogger("bench_embed")


def reference_embed(rgb: np.ndarray) -> None:
    enc = get_analyzer("dlib-resnet-v1")
    import dlib  # noqa: PLC0415
    rects = _hog_detector()(rgb, 1)
    r = max(rects, key=lambda r: r.area())
    shape = enc._sp5(rgb, r)
    enc._net.compute_face_descriptor(rgb, shape, 0)
    del dlib


def main(argv: list[str] | None = None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--photo", default=None, help="a photo with one face (default: the group photo's largest face)")
    p.add_argument("--repeats", type=int, default=5)
    add_output_args(p, json_out=False)
    args = p.parse_args(argv)
    setup_logging(args.verbose, quiet_libraries=False)
    base = load_image(args.photo or example_photo("group"))
    import cv2  # noqa: PLC0415
    embed_image(base)                                        # start-up: load the models once
    rows = []
    for mp in (0.3, 1.0, 3.0, 12.0):
        h, w = base.shape[:2]
        s = (mp * 1e6 / (h * w)) ** 0.5
        rgb = np.ascontiguousarray(cv2.resize(base, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC))
        ours = median_time(lambda: embed_image(rgb), args.repeats)
        ref = median_time(lambda: reference_embed(rgb), max(1, args.repeats // 2))
        rows.append((mp, rgb.shape[1], rgb.shape[0], ours, ref))
    print(f"{'MP':>5} {'size':>11} {'facegen s/img':>14} {'reference s/img':>16} {'speed-up':>9}")
    for mp, w, h, ours, ref in rows:
        print(f"{mp:5.1f} {w:5d}x{h:<5d} {ours:14.3f} {ref:16.3f} {ref / ours:8.1f}x")
    one_mp = rows[1][3]
    print(f"1-MP embed: {one_mp:.3f} s/image (target < 1 s): {'PASS' if one_mp < 1.0 else 'FAIL'}")
    return 0 if one_mp < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
