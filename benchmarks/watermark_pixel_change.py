"""How much the invisible watermark changes the pixels of a written image (the README's figure).

    python benchmarks/watermark_pixel_change.py            # the photos of ../shared/faces + the example photos
    python benchmarks/watermark_pixel_change.py --sizes 256 512 1024

Each photo is written the way every facegen output is (``facegen.io.save_image`` as PNG, C2PA
off: the manifest does not touch pixels) with the watermark on, read back, and compared with
the same photo written with ``--no-watermark`` (the in-process reference: PNG is lossless, so
the reference differs from the input by 0 levels). Printed per photo and size: the largest
change of one channel value in levels (0-255), the mean change, and the share of pixels that
changed; then the largest over all photos, which the README quotes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import _common as C


def photos() -> list[Path]:
    found = sorted(p for p in (C.REPO.parent / "shared" / "faces").glob("*") if p.suffix.lower() in (".jpg", ".png"))
    try:
        from facegen.examples import example_photo
        found += [example_photo("tom_hanks"), example_photo("group")]
    except Exception:  # noqa: BLE001 - the wheel's photos are optional
        pass
    return found


def main() -> int:
    p = C.make_parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="long side each photo is resized to")
    args = p.parse_args()
    C.setup_logging()
    from PIL import Image

    from facegen.io import load_image, save_image
    from facegen.provenance import Provenance, watermark

    if not watermark.available():
        print("invisible-watermark is not installed: nothing to measure", file=sys.stderr)
        return 2
    worst = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in photos():
            rgb0 = load_image(path)
            for side in args.sizes:
                scale = side / max(rgb0.shape[:2])
                size = (max(1, round(rgb0.shape[1] * scale)), max(1, round(rgb0.shape[0] * scale)))
                rgb = np.asarray(Image.fromarray(rgb0).resize(size, Image.LANCZOS))
                if watermark.too_small(*rgb.shape[:2]):
                    continue
                ref = load_image(save_image(Path(tmp) / "ref.png", rgb, provenance=Provenance(watermark=False, c2pa=False)))
                out = load_image(save_image(Path(tmp) / "wm.png", rgb, provenance=Provenance(c2pa=False)))
                d = np.abs(out.astype(np.int16) - ref.astype(np.int16))
                worst = max(worst, int(d.max()))
                print(f"{path.name:28s} {size[0]:5d}x{size[1]:<5d} max {int(d.max()):2d} levels  mean {d.mean():.2f}  "
                      f"pixels changed {100 * d.any(-1).mean():.1f} %  (reference: no watermark, "
                      f"{int(np.abs(ref.astype(np.int16) - rgb).max())} levels)")
    print(f"largest change: {worst} levels (of 255) in any channel of any pixel")
    print(C.versions())
    return 0


if __name__ == "__main__":
    sys.exit(main())
