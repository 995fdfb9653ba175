"""Provenance marks: watermark robustness, false positives with the analytic rate, PSNR, the
cost of marking on the CPU (torch, batch 1 and 8, against the ONNX reference), signing and
inspecting (issues 13 and 26).

    python benchmarks/bench_provenance.py --sizes 512,1024 --n 100 --fp 2000 --json out.json
    python benchmarks/bench_provenance.py --timing-only
    python benchmarks/bench_provenance.py --timing-only --device cuda      # on a GPU
    python benchmarks/bench_provenance.py --only gains --n 100 --sizes 512    # what the gain ladder can buy
    python benchmarks/bench_provenance.py --only video --clips 8 --trials 5   # 1-second slices of marked clips

On a busy machine split the work over two processes and cache the marked crops; each rewrites
its JSON after every round, so a run stopped by a time limit still leaves its figures:

    nice -n 5 timeout 3900 python benchmarks/bench_provenance.py --only robustness --threads 1 \
        --cache /tmp/wm-cache --json robust.json &
    nice -n 5 timeout 3900 python benchmarks/bench_provenance.py --only fp --threads 1 --json fp.json &

The marked crops go through the attacks 10 per size per round, the sizes alternating, so every
size and attack has figures from the first round on.

Images: square crops (random position, 55-100 % of the short side, random mirror; fixed seed)
of the real photos in ../shared/faces and the insightface wheel's example photos, resized to
each of ``--sizes``. The marked set and the unmarked (false-positive) set are different crops;
the false-positive set also mixes sizes (256, 384, 512, 1024) and non-square crops, and ends
with 10 frames of an unmarked pan/zoom clip of each photo (H.264 CRF 23).
"Detected" = facegen's rule: p-value <= 1e-6 (:func:`facegen.provenance.watermark.detect`).
Video (``--only video``, :mod:`_provenance_video`): marked pan/zoom clips of the photos, cut into
1-second slices at random starts, re-encoded at H.264 CRF 28 and read as ``facegen inspect`` does.

Attacks: JPEG q75 / q50; crop 25 % (a 75 % window); JPEG q75 + resize 0.5 + crop 10 %
together; Meta's combination (crop to 0.71 of each side + JPEG q60 + brightness x 0.5);
rotation 2°; resize 0.8 + PNG (a screenshot); H.264 CRF 28 (the frames of a re-encode); and
Meta's combination read without the brightness lift (the ablation of that step).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
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


def crop_window(x: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    ch, cw = round(h * keep), round(w * keep)
    y, xx = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return x[y:y + ch, xx:xx + cw]


def crop10(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return crop_window(x, 0.9, rng)


def rotate(x: np.ndarray, deg: float) -> np.ndarray:
    h, w = x.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def h264(x: np.ndarray, crf: int = 28, frames: int = 4) -> np.ndarray:
    """The last frame of a short clip of ``x`` encoded with libx264 at ``crf`` and decoded."""
    import av  # noqa: PLC0415

    buf = io.BytesIO()
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=24)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": str(crf), "preset": "veryfast"}
        for _ in range(frames):
            out.mux(st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(x[:h, :w]), format="rgb24")))
        out.mux(st.encode())
    buf.seek(0)
    with av.open(buf) as inp:
        decoded = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    return decoded[-1]


def attacks(rng: np.random.Generator) -> dict:
    return {
        "none": lambda x: x,
        "JPEG q75": lambda x: jpeg(x, 75),
        "JPEG q50": lambda x: jpeg(x, 50),
        "crop 25 %": lambda x: crop_window(x, 0.75, rng),
        "JPEG q75 + resize 0.5 + crop 10 %, together": lambda x: jpeg(resize(crop10(x, rng), 0.5), 75),
        "Meta combo: crop 0.71 + JPEG q60 + brightness x0.5": lambda x: np.clip(
            jpeg(crop_window(x, 0.71, rng), 60).astype(np.float32) * 0.5, 0, 255).astype(np.uint8),
        "Meta combo, read without brightness normalisation": None,     # the same images as the row above
        "rotate 2°": lambda x: rotate(x, 2.0),
        "resize 0.8 + PNG (screenshot)": lambda x: png(resize(x, 0.8)),
        "H.264 CRF 28": h264,
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def robustness(marked_set: list[np.ndarray], rng_seed: int, rows: dict | None = None, batch: int = 8) -> dict:
    """Every attack on every image of ``marked_set``, read in batches; adds the counts to ``rows``."""
    rows = {} if rows is None else rows
    attacked: list[np.ndarray] = []
    for name, attack in attacks(np.random.default_rng(rng_seed)).items():
        if attack is not None:
            attacked = [np.ascontiguousarray(attack(x)) for x in marked_set]
        readings = W.detect_batch(attacked, batch=batch, normalise=attack is not None)
        row = rows.setdefault(name, {"n": 0, "found": 0, "bits_sum": 0.0})
        row["n"] += len(readings)
        row["found"] += sum(r.found for r in readings)
        row["bits_sum"] += sum(r.bit_agreement for r in readings)
        row["detected"] = row["found"] / row["n"]
        row["bits"] = row["bits_sum"] / row["n"]
    return rows


def fp_crops(photos: list[np.ndarray], n: int, seed: int):
    """``n`` unmarked crops (30-100 % of each side, random mirror) resized to long side 256/384/512/1024."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        rgb = photos[i % len(photos)]
        h, w = rgb.shape[:2]
        ch, cw = int(h * rng.uniform(0.3, 1.0)), int(w * rng.uniform(0.3, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        c = np.ascontiguousarray(rgb[y:y + ch, x:x + cw][:, ::-1] if rng.random() < 0.5 else rgb[y:y + ch, x:x + cw])
        side = int(rng.choice([256, 384, 512, 1024]))
        f = side / max(ch, cw)
        yield cv2.resize(c, (max(1, round(cw * f)), max(1, round(ch * f))), interpolation=cv2.INTER_AREA)


def false_positives(photos: list[np.ndarray], n: int, seed: int, save=None, batch: int = 8,
                    video_frames: int = 10) -> dict:
    """Reads ``n`` unmarked crops, then ``video_frames`` frames of an unmarked clip of each photo,
    ``batch`` at a time; ``save(partial)`` after each batch. Besides the count found, the share of
    p-values at or below 0.1 / 0.01 / 0.001 checks the stated rate where 2,000 images can
    (an honest p-value has at most that share)."""
    from _provenance_video import unmarked_frames  # noqa: PLC0415

    levels = (0.1, 0.01, 0.001)
    out = {"n": 0, "video_frames": 0, "found": 0, "analytic_rate": W.FOUND_P, "dark": 0, "min_p": 1.0,
           "p_at_most": {str(t): 0 for t in levels}, "max_bits": 0, "bits_histogram": {}}
    pending: list[tuple[np.ndarray, bool]] = []

    def flush() -> None:
        for r, (_, video) in zip(W.detect_batch([x for x, _ in pending], batch=batch), pending):
            out["n"] += 1
            out["video_frames"] += video
            out["found"] += r.found
            out["dark"] += r.tries > len(W.CROP_FRACTIONS)
            out["min_p"] = min(out["min_p"], r.p_value)
            for t in levels:
                out["p_at_most"][str(t)] += r.p_value <= t
            out["max_bits"] = max(out["max_bits"], r.agreeing_bits)
            out["bits_histogram"][r.agreeing_bits] = out["bits_histogram"].get(r.agreeing_bits, 0) + 1
        pending.clear()
        if save:
            save(out)

    for item in itertools.chain(((c, False) for c in fp_crops(photos, n, seed)),
                                ((f, True) for f in unmarked_frames(photos, per_clip=video_frames))):
        pending.append(item)
        if len(pending) == batch * 4:
            flush()
            print(f"  false positives so far: {out['found']}/{out['n']}", flush=True)
    if pending:
        flush()
    shares = ", ".join(f"p <= {t}: {out['p_at_most'][str(t)]} ({out['p_at_most'][str(t)] / out['n']:.2%})"
                       for t in levels)
    print(f"false positives: {out['found']}/{out['n']} unmarked images ({out['video_frames']} of them video frames; "
          f"stated rate per image <= {W.FOUND_P:g}); smallest p-value {out['min_p']:.2g}; {shares}; most key bits "
          f"on one: {out['max_bits']}/{W.BITS}; dark (read twice): {out['dark']}", flush=True)
    return out


def _median(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def onnx_reference(x: np.ndarray):
    """A callable marking one image the way facegen did before issue 26 (onnxruntime on the CPU,
    encoder at 256 + one read-back), when invisible-watermark's ONNX files are installed."""
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        return None
    import onnxruntime as ort  # noqa: PLC0415

    d = Path(next(iter(spec.submodule_search_locations)))
    enc = ort.InferenceSession(str(d / "rivagan_encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(d / "rivagan_decoder.onnx"), providers=["CPUExecutionProvider"])
    work = cv2.resize(x, (256, 256), interpolation=cv2.INTER_AREA)
    f = (work.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None, :, None]

    def run() -> None:
        out = enc.run(None, {"frame": f, "data": W.key_bits()[None]})[0]
        dec.run(None, {"frame": out})

    run()
    return run


def timing(photo: np.ndarray, tmp: Path, device: str | None, reps: int = 3) -> dict:
    """Rounds interleaved (the load of a shared machine moves between them), medians reported."""
    from facegen.io import encode_png  # noqa: PLC0415
    from facegen.provenance import credentials as C  # noqa: PLC0415
    from facegen.provenance.inspect import inspect_file  # noqa: PLC0415

    out: dict = {"device": device or "cpu"}
    x = cv2.resize(photo, (512, 512), interpolation=cv2.INTER_AREA)
    marked, info = W.embed([x], device=device)                     # load the networks once
    out["gain"] = info[0]["gain"]
    dev = W._device(device)
    work = [cv2.resize(x, (256, 256), interpolation=cv2.INTER_AREA)]

    def like_for_like() -> None:                 # the reference's work: encoder + decoder at 256, one image
        W._residuals(work, dev)
        W._decode(work, dev)

    ref = onnx_reference(x) if out["device"] == "cpu" else None
    jobs = {"embed_ms_batch1": (lambda: W.embed([x], device=device), 1),
            "embed_ms_batch8": (lambda: W.embed([x] * 8, device=device), 8),
            "torch_encoder_decoder_ms": (like_for_like, 1),
            "detect_marked_ms": (lambda: W.detect(marked[0], device=device), 1),
            "detect_unmarked_ms": (lambda: W.detect(x, device=device), 1)}
    if out["device"] == "cpu":                   # what CPU_MICRO_BATCH avoids: 8 images in one network call

        def one_call() -> None:
            keep, W.CPU_MICRO_BATCH = W.CPU_MICRO_BATCH, 8
            try:
                W.embed([x] * 8, device=device)
            finally:
                W.CPU_MICRO_BATCH = keep
        jobs["embed_ms_batch8_one_network_call"] = (one_call, 8)
    if ref is not None:
        jobs["onnx_reference_ms"] = (ref, 1)
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(reps):
        for k, (fn, n) in jobs.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) / n * 1000)
    for k in jobs:
        out[k] = statistics.median(times[k])
    print(f"512² watermark on {out['device']} (gain {out['gain']}), ms per image, median of {reps} interleaved "
          f"rounds: embed batch 1 {out['embed_ms_batch1']:.0f}, batch 8 {out['embed_ms_batch8']:.0f} (in one network "
          f"call: {out.get('embed_ms_batch8_one_network_call', float('nan')):.0f}); encoder + "
          f"decoder at 256 {out['torch_encoder_decoder_ms']:.0f}; detect marked {out['detect_marked_ms']:.0f}, "
          f"unmarked {out['detect_unmarked_ms']:.0f}", flush=True)
    if ref is not None:
        r = out["onnx_reference_ms"]
        print(f"  reference (onnxruntime CPU, encoder + decoder at 256, before issue 26): {r:.0f} ms per image; "
              f"torch like for like x{r / out['torch_encoder_decoder_ms']:.2f}, torch embed batch 1 "
              f"x{r / out['embed_ms_batch1']:.2f}, batch 8 x{r / out['embed_ms_batch8']:.2f} (>1: torch faster)",
              flush=True)
    meta = {"preset": "bench", "seed": 0}
    off = Provenance(watermark=False, c2pa=False)
    out["plain_png_s"] = _median(lambda: save_image(tmp / "plain.png", x, meta, provenance=off), reps)
    data = encode_png(x, meta, provenance=off)
    ident = C.default_identity()
    manifest = C.build_manifest(C.CREATED, title="x.png", fields=meta)
    out["sign_s"] = _median(lambda: C.sign_bytes(data, "PNG", manifest, ident), reps * 3)
    out["save_all_s"] = _median(lambda: save_image(tmp / "both.png", x, meta), reps)
    out["inspect_s"] = _median(lambda: inspect_file(tmp / "both.png"), reps)
    rep = inspect_file(tmp / "both.png")
    assert rep["verdict"].startswith("AI-generated by facegen"), rep["verdict"]
    print(f"512²: sign {out['sign_s'] * 1000:.1f} ms; save with both marks "
          f"{out['save_all_s']:.2f} s (plain PNG {out['plain_png_s']:.3f} s); inspect {out['inspect_s']:.2f} s",
          flush=True)
    return out


def marked_crops(photos: list[np.ndarray], n: int, size: int, start: int, count: int, cache: Path | None
                 ) -> tuple[list, list, list]:
    """Crops ``start:start + count`` of the ``n`` at ``size``, their marked copies and the embed
    info; cached in ``cache`` (keyed by the watermark's settings) so that a rerun reads them."""
    import hashlib  # noqa: PLC0415

    src = crops(photos, n, size, seed=1)[start:start + count]
    key = hashlib.sha256(repr((W.METHOD, W.GAINS, W.CHECK_JPEG_QUALITY, W.CHECK_CROP, W.CHECK_CROP_BITS, W.WORK_SIDE)).encode()).hexdigest()[:10]
    # (the embed does not read with the brightness lift: the cache stays valid across reading changes)
    f = cache / f"marked-{size}-{n}-{start}-{count}-{key}.npz" if cache else None
    if f and f.is_file():
        z = np.load(f, allow_pickle=False)
        return src, list(z["marked"]), json.loads(str(z["info"]))
    marked, info = W.embed(src)
    if f:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, marked=np.stack(marked), info=json.dumps(info))
    return src, marked, info


PROBE_GAINS = (1.0, 1.25, 1.4, 1.6, 1.8, 2.0, 2.3, 2.6)
META = "Meta combo: crop 0.71 + JPEG q60 + brightness x0.5"


def gain_probe(photos: list[np.ndarray], n: int, size: int, seed: int = 1) -> list[dict]:
    """Each of ``n`` crops marked at every gain of :data:`PROBE_GAINS` (one residual per crop): its PSNR,
    the embed's read-back (:func:`facegen.provenance.watermark.read_back`), and whether the combined
    attack and Meta's combination are found (the same windows at every gain). What a gain ladder
    and its check can and cannot buy, per crop."""
    dev = W._device(None)
    rows = []
    for i, img in enumerate(crops(photos, n, size, seed=seed)):
        hw = W._work_size(*img.shape[:2])
        res = W._residuals([W._resize(np.ascontiguousarray(img), hw, shrink=True)], dev)[0]
        row: dict = {"crop": i}
        for g in PROBE_GAINS:
            m = W._apply(img, res, g)
            rb = W.read_back([m], hw, dev)
            rng = np.random.default_rng(1000 + i)
            combined = np.ascontiguousarray(jpeg(resize(crop10(m, rng), 0.5), 75))
            meta = np.ascontiguousarray(attacks(rng)[META](m))
            readings = W.detect_batch([combined, meta])
            row[str(g)] = {"psnr": psnr(m, img), "read_back": [int(b) for b in rb[0]], "passes": bool(W.passes(rb)[0]),
                           "found": bool(readings[0].found), "meta_found": bool(readings[1].found)}
        rows.append(row)
    return rows


def ladder_outcomes(rows: list[dict], ladder: tuple[float, ...], *, old_check: bool = False) -> dict:
    """Mean PSNR and detections if the embed walked ``ladder`` (next gain while the check fails;
    the last gain when it never passes); ``old_check``: the third round's check (all 32 bits at
    the working size only)."""
    psnrs, found, meta = [], 0, 0
    for r in rows:
        g = next((str(x) for x in ladder if (r[str(x)]["read_back"][0] == W.BITS if old_check
                                             else r[str(x)]["passes"])), str(ladder[-1]))
        psnrs.append(r[g]["psnr"])
        found += r[g]["found"]
        meta += r[g]["meta_found"]
    return {"psnr_mean": round(statistics.mean(psnrs), 2), "found": found, "meta_found": meta, "n": len(rows)}


def gain_report(rows: list[dict]) -> dict:
    g = PROBE_GAINS
    out = {f"fixed gain {x}": ladder_outcomes(rows, (x,)) for x in g}
    out["found at some gain"] = {"found": sum(any(r[str(x)]["found"] for x in g) for r in rows), "n": len(rows)}
    out[f"ladder {W.GAINS} (the embed's)"] = ladder_outcomes(rows, W.GAINS)
    out[f"ladder {W.GAINS}, old check"] = ladder_outcomes(rows, W.GAINS, old_check=True)
    out["ladder (1.25, 1.6, 2.0, 2.6), old check (third round)"] = ladder_outcomes(rows, (1.25, 1.6, 2.0, 2.6),
                                                                                   old_check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100, help="marked crops per size")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--fp", type=int, default=2000, help="unmarked crops for the false-positive count")
    ap.add_argument("--clips", type=int, default=8, help="marked clips for the video slice test")
    ap.add_argument("--clip-seconds", type=float, default=4.0)
    ap.add_argument("--trials", type=int, default=5, help="1-second slices cut from each clip")
    ap.add_argument("--only", choices=("robustness", "fp", "video", "gains", "all"), default="all",
                    help="run one part (two processes can share the work); gains: every crop at every gain of the ladder through the combined attack (not part of all); --timing-only: the cost table")
    ap.add_argument("--chunk", type=int, default=10, help="marked crops per size per round (sizes alternate)")
    ap.add_argument("--batch", type=int, default=8, help="readings per network call")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--cache", default=None, help="folder caching the marked crops between runs")
    ap.add_argument("--device", default=None, help="torch device for the cost table (default: CPU)")
    ap.add_argument("--json", default=None, help="results, rewritten after every round (a stopped run keeps them)")
    ap.add_argument("--timing-only", action="store_true", help="only the cost of marking, signing, inspecting")
    args = ap.parse_args()
    if args.threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads)
    paths = photo_paths()
    if not paths:
        print("no photos found (../shared/faces, insightface)", file=sys.stderr)
        return 1
    photos = [load_image(p) for p in paths]
    report: dict = {"photos": [p.name for p in paths], "settings": {"gains": W.GAINS, "crop_fractions":
                    W.CROP_FRACTIONS, "found_p": W.FOUND_P}, "command": " ".join(sys.argv), "sizes": {}}

    def save() -> None:
        if args.json:
            tmp = Path(args.json + ".tmp")
            tmp.write_text(json.dumps(report, indent=1, default=str))
            tmp.replace(args.json)

    cache = Path(args.cache) if args.cache else None
    if args.only == "gains":
        for size in [int(s) for s in args.sizes.split(",")]:
            rows = gain_probe(photos, args.n, size)
            report["sizes"][size] = {"report": gain_report(rows), "crops": rows}
            save()
            for name, r in report["sizes"][size]["report"].items():
                print(f"{size}² {name}: " + ", ".join(f"{k} {v}" for k, v in r.items()), flush=True)
        return 0
    if not args.timing_only and args.only in ("all", "robustness"):
        sizes = [int(s) for s in args.sizes.split(",")]
        per: dict[int, dict] = {s: {"n": 0, "psnr": [], "gains": {}, "attacks": {}} for s in sizes}
        for size in sizes:
            report["sizes"][size] = per[size]
        for start in range(0, args.n, args.chunk):
            for size in sizes:
                count = min(args.chunk, args.n - start)
                src, marked, info = marked_crops(photos, args.n, size, start, count, cache)
                r = per[size]
                r["psnr"] += [psnr(a, b) for a, b in zip(marked, src)]
                for i in info:
                    r["gains"][str(i["gain"])] = r["gains"].get(str(i["gain"]), 0) + 1
                robustness(marked, rng_seed=3 + start, rows=r["attacks"], batch=args.batch)
                r["n"] += count
                r["psnr_mean"], r["psnr_min"] = statistics.mean(r["psnr"]), min(r["psnr"])
                save()
                print(f"{size}²: {r['n']} crops; PSNR mean {r['psnr_mean']:.2f} dB, min {r['psnr_min']:.1f}; gains "
                      f"{r['gains']}; " + "; ".join(f"{k} {v['found']}/{v['n']}" for k, v in r["attacks"].items()),
                      flush=True)
    if not args.timing_only and args.only in ("all", "fp"):
        def keep(part: dict) -> None:
            report["false_positives"] = part
            save()
        false_positives(photos, args.fp, seed=2, save=keep, batch=args.batch)
    if not args.timing_only and args.only in ("all", "video"):
        from _provenance_video import slice_trials  # noqa: PLC0415

        report["video_slices"] = v = slice_trials(photos, args.clips, args.clip_seconds, args.trials)
        save()
        print(f"video: {v['found']}/{v['trials']} one-second slices (re-encoded at H.264 CRF 28) found "
              f"({v['detected']:.0%}); sampled frames carrying the mark {v['frames_found']}/{v['frames_read']}",
              flush=True)
    if args.timing_only or args.only == "all":
        with tempfile.TemporaryDirectory() as tmp:
            report["timing"] = timing(photos[0], Path(tmp), args.device)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
