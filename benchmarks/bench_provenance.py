"""Provenance marks: watermark robustness, false positives, PSNR, and the cost of marking,
signing and inspecting (issue 13).

    python benchmarks/bench_provenance.py                  # 50 marked + 50 unmarked 256² crops
    python benchmarks/bench_provenance.py --size 512 --n 50 --json out.json

Images: square crops (random position, scale and mirror; fixed seed) of the real photos in
../shared/faces and the insightface wheel's example photos, resized to ``--size``. The
marked set and the unmarked (false-positive) set are different crops. Both methods carry the
same 32-bit payload (16-bit facegen marker + 16-bit content id); "detected" = facegen's rule
(>= 15 of the 16 marker bits); "bits" = mean agreement over all 32 bits.

Attacks: PNG re-save; JPEG q90/q75/q50; resize 0.5 decoded at the small size; resize 0.5 and
back; crop 10 % (a 90 % window at a random offset); crop 10 % + resize 0.5; rotation 2°;
JPEG q75 + resize 0.5 + crop 10 % together.

Timing: embed / sign / inspect of one 512² and one 1024² image, with a plain PNG encode of
the same image as the in-process reference.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facegen.io import load_image, save_image  # noqa: E402
from facegen.provenance import Provenance  # noqa: E402
from facegen.provenance import watermark as W  # noqa: E402


def photo_paths() -> list[Path]:
    out = []
    shared = REPO.parent / "shared" / "faces"
    if shared.is_dir():
        out += sorted(p for p in shared.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    spec = importlib.util.find_spec("insightface")
    if spec and spec.origin:
        d = Path(spec.origin).parent / "data" / "images"
        out += sorted(d.glob("*.jpg")) + sorted(d.glob("*.png"))
    return out


def crops(photos: list[np.ndarray], n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rgb = photos[i % len(photos)]
        h, w = rgb.shape[:2]
        side = int(min(h, w) * rng.uniform(0.55, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        c = rgb[y:y + side, x:x + side]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out.append(cv2.resize(np.ascontiguousarray(c), (size, size), interpolation=cv2.INTER_AREA))
    return out


def jpeg(x: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def png(x: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "PNG")
    return np.asarray(Image.open(buf).convert("RGB"))


def resize(x: np.ndarray, f: float) -> np.ndarray:
    h, w = x.shape[:2]
    return np.asarray(Image.fromarray(x).resize((round(w * f), round(h * f)), Image.BICUBIC))


def crop10(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    ch, cw = round(h * 0.9), round(w * 0.9)
    y, xx = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return x[y:y + ch, xx:xx + cw]


def rotate(x: np.ndarray, deg: float) -> np.ndarray:
    h, w = x.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def attacks(rng: np.random.Generator) -> dict:
    return {
        "none": lambda x: x,
        "PNG re-save": png,
        "JPEG q90": lambda x: jpeg(x, 90),
        "JPEG q75": lambda x: jpeg(x, 75),
        "JPEG q50": lambda x: jpeg(x, 50),
        "resize 0.5, decoded small": lambda x: resize(x, 0.5),
        "resize 0.5 and back": lambda x: resize(resize(x, 0.5), 2.0),
        "crop 10 %": lambda x: crop10(x, rng),
        "crop 10 % + resize 0.5": lambda x: resize(crop10(x, rng), 0.5),
        "rotate 2°": lambda x: rotate(x, 2.0),
        "JPEG q75 + resize 0.5 + crop 10 %": lambda x: jpeg(resize(crop10(x, rng), 0.5), 75),
    }


def bits_of(cid: str) -> np.ndarray:
    return W.payload_bits(cid) > 0.5


# ------------------------------------------------------------------ the two methods
class Riva:
    name = "rivaGan (facegen)"

    def embed(self, x: np.ndarray, cid: str) -> np.ndarray:
        return W.embed_verified(x, cid)[0]          # what save_image does

    def read(self, x: np.ndarray) -> tuple[bool, np.ndarray]:
        r = W.detect(x)                              # what facegen inspect does
        idbits = bits_of(r.content_id or "0000")[16:]
        return r.found, (r.bit_agreement, idbits)


class DwtDctSvd:
    name = "dwtDctSvd"

    def __init__(self) -> None:
        from imwatermark import WatermarkDecoder, WatermarkEncoder  # noqa: PLC0415
        self.enc, self.dec = WatermarkEncoder, WatermarkDecoder

    def embed(self, x: np.ndarray, cid: str) -> np.ndarray:
        e = self.enc()
        e.set_watermark("bits", [int(b) for b in bits_of(cid)])
        return e.encode(x[:, :, ::-1].copy(), "dwtDctSvd")[:, :, ::-1].copy()

    def read(self, x: np.ndarray) -> tuple[bool, np.ndarray]:
        if x.shape[0] * x.shape[1] < 256 * 256:
            return False, (0.5, np.zeros(16, bool))
        bits = np.array(self.dec("bits", 32).decode(x[:, :, ::-1].copy(), "dwtDctSvd"), bool)
        agree = float((bits[:16] == bits_of("0000")[:16]).mean())
        return agree * 16 >= W.FOUND_AT, (agree, bits[16:])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def robustness(method, marked_set, cids, rng_seed: int) -> dict:
    rows = {}
    for name, attack in attacks(np.random.default_rng(rng_seed)).items():
        found, accs = 0, []
        for x, cid in zip(marked_set, cids):
            ok, (marker_agree, idbits) = method.read(np.ascontiguousarray(attack(x)))
            found += ok
            accs.append((marker_agree * 16 + float((idbits == bits_of(cid)[16:]).sum())) / 32)
        rows[name] = {"detected": found / len(marked_set), "bits": statistics.mean(accs)}
        print(f"  {method.name:18s} {name:36s} detected {found}/{len(marked_set)}  bits {rows[name]['bits']:.3f}",
              flush=True)
    return rows


def _median(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def timing(size: int, photo: np.ndarray, tmp: Path, reps: int = 3) -> dict:
    from facegen.io import encode_png  # noqa: PLC0415
    from facegen.provenance import credentials as C  # noqa: PLC0415
    from facegen.provenance.inspect import inspect_file  # noqa: PLC0415

    x = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
    meta = {"preset": "bench", "seed": 0}
    off = Provenance(watermark=False, c2pa=False)
    plain = _median(lambda: save_image(tmp / "plain.png", x, meta, provenance=off), reps)
    emb = _median(lambda: W.embed_verified(x, "abcd"), reps)
    data = encode_png(x, meta, provenance=off)
    ident = C.default_identity()
    manifest = C.build_manifest(C.CREATED, title="x.png", fields=meta)
    sign = _median(lambda: C.sign_bytes(data, "PNG", manifest, ident), reps * 3)
    both = _median(lambda: save_image(tmp / "both.png", x, meta), reps)
    insp = _median(lambda: inspect_file(tmp / "both.png"), reps)
    rep = inspect_file(tmp / "both.png")
    assert rep["verdict"].startswith("AI-generated by facegen"), rep["verdict"]
    return {"size": size, "plain_png_s": plain, "embed_s": emb, "sign_s": sign, "save_all_s": both,
            "inspect_s": insp, "ratio_to_plain_png": both / plain}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--no-dwt", action="store_true", help="skip the dwtDctSvd comparison")
    ap.add_argument("--json", default=None)
    ap.add_argument("--timing-only", action="store_true", help="only the cost of marking, signing, inspecting")
    args = ap.parse_args()
    paths = photo_paths()
    if not paths:
        print("no photos found (../shared/faces, insightface)", file=sys.stderr)
        return 1
    photos = [load_image(p) for p in paths]
    marked_src = crops(photos, args.n, args.size, seed=1)
    clean = crops(photos, args.n, args.size, seed=2)
    print(f"{len(paths)} photos → {args.n} marked + {args.n} unmarked {args.size}² crops", flush=True)
    methods = [Riva()] + ([] if args.no_dwt or args.timing_only else [DwtDctSvd()])
    report: dict = {"photos": [p.name for p in paths], "n": args.n, "size": args.size, "methods": {}}
    for m in ([] if args.timing_only else methods):
        cids = [W.content_id(x, str(i)) for i, x in enumerate(marked_src)]
        t = time.perf_counter()
        marked = [m.embed(x, c) for x, c in zip(marked_src, cids)]
        emb = (time.perf_counter() - t) / len(marked)
        ps = [psnr(a, b) for a, b in zip(marked, marked_src)]
        print(f"{m.name}: PSNR mean {statistics.mean(ps):.1f} dB, min {min(ps):.1f} dB; embed {emb:.2f} s/image",
              flush=True)
        rows = robustness(m, marked, cids, rng_seed=3)
        fp = sum(m.read(x)[0] for x in clean)
        fp_agree = [m.read(x)[1][0] for x in clean]
        print(f"  {m.name}: false positives {fp}/{len(clean)} (marker agreement on unmarked: mean "
              f"{statistics.mean(fp_agree):.2f}, max {max(fp_agree):.2f})", flush=True)
        report["methods"][m.name] = {"psnr_mean": statistics.mean(ps), "psnr_min": min(ps), "embed_s": emb,
                                     "attacks": rows, "false_positives": fp, "fp_max_marker_agreement": max(fp_agree)}
    with tempfile.TemporaryDirectory() as tmp:
        report["timing"] = [timing(s, photos[0], Path(tmp)) for s in (512, 1024)]
    for t in report["timing"]:
        print(f"{t['size']}²: plain PNG {t['plain_png_s']:.3f} s; watermark {t['embed_s']:.2f} s; sign "
              f"{t['sign_s'] * 1000:.1f} ms; save with both {t['save_all_s']:.2f} s (×{t['ratio_to_plain_png']:.0f} "
              f"the plain PNG); inspect {t['inspect_s']:.2f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
