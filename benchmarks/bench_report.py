"""Throughput of `facegen dataset-report` against the judge encoder's own batched throughput.

The report is bound by its encoder: target ≥ 0.85 × the encoder's batched throughput on the
same images (≤ 15 % overhead for reading, decoding, pose, crops and hashes).  Both run in this
process, alternately (reference, report, reference, report, ... ``--repeats``; the best of each
is kept, the CPU is shared):

* **reference**: the images decoded beforehand (untimed), then only
  ``EncoderEmbedFn(encoder).embed_many`` over batches — the batched path the dataset filters use;
* **report**: ``build_report`` on the ImageFolder, same batch size, one worker (the same cores
  as the reference).  Its *throughput* is the streaming phase (``timing.measure_seconds`` in
  ``report.json``: list → read → decode → detect/embed → pose, crop, hashes, per image), the part
  that grows with the dataset; the table also shows the *end-to-end* time, which adds the fixed
  costs (metrics, importing matplotlib, four plots, writing: about 1–3 s per report whatever its
  size), by wall clock and by CPU time (steadier on a shared machine).
  ``--workers N`` adds a run with N worker processes.

The ImageFolder is built from ../shared/faces (or ``--faces DIR``), one folder per identity
(``obama_2.jpg`` → ``obama``), each photo repeated with a random rescale (0.6–1.0) and every
other round mirrored, as JPEGs, up to ``--images``.

    python benchmarks/bench_report.py [--images 64] [--repeats 2] [--workers 2] [--encoder NAME]

Exit status 1 when the throughput ratio is below ``--target``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "faces"


def identity_of(path: Path) -> str:
    parts = path.stem.split("_")
    while parts and (parts[-1].isdigit() or parts[-1] == "small"):
        parts.pop()
    return "_".join(parts)


def build_folder(faces: Path, out: Path, n: int, seed: int = 0) -> int:
    import cv2

    from facegen.io import load_image

    photos = sorted(p for p in faces.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                    and "group" not in p.stem)
    if not photos:
        raise SystemExit(f"no photos in {faces}")
    rng = np.random.default_rng(seed)
    rgbs = {p: load_image(p) for p in photos}
    for k in range(n):
        p = photos[k % len(photos)]
        rgb = rgbs[p]
        s = rng.uniform(0.6, 1.0)
        img = cv2.resize(rgb, (max(32, round(rgb.shape[1] * s)), max(32, round(rgb.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
        if (k // len(photos)) % 2:
            img = img[:, ::-1]
        d = out / identity_of(p)
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{p.stem}_{k:04d}.jpg"), cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="also time the report with N worker processes")
    ap.add_argument("--encoder", default="dlib-resnet-v1")
    ap.add_argument("--target", type=float, default=0.85)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr)
    if not args.faces.is_dir():
        print(f"photos not found: {args.faces} (give --faces DIR)", file=sys.stderr)
        return 2

    from facegen.dataset.filters import EncoderEmbedFn
    from facegen.dataset.report import build_report
    from facegen.dataset.report_source import open_dataset
    from facegen.io import load_image

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        folder = Path(tmp) / "ds"
        build_folder(args.faces, folder, args.images)
        source = open_dataset(folder)
        rgbs = [load_image(folder / name) for name in source.names]
        embed = EncoderEmbedFn(args.encoder)
        embed.embed_many(rgbs[:1])                         # load the models once (both paths share them)
        pixels = sum(r.shape[0] * r.shape[1] for r in rgbs) / len(rgbs) / 1e6

        def reference() -> tuple[float, float]:
            t0, c0 = time.perf_counter(), time.process_time()
            found = 0
            for start in range(0, len(rgbs), args.batch_size):
                found += sum(e is not None for e in embed.embed_many(rgbs[start:start + args.batch_size]))
            assert found > 0, "the encoder found no face"
            return time.perf_counter() - t0, time.process_time() - c0

        def report(workers: int) -> tuple[float, float, float]:
            t0, c0 = time.perf_counter(), time.process_time()
            rep = build_report(folder, encoder=args.encoder, out=Path(tmp) / f"report-{workers}", workers=workers,
                               batch_size=args.batch_size, progress=False)
            return time.perf_counter() - t0, time.process_time() - c0, rep.data["timing"]["measure_seconds"]

        ref_runs, rep_runs, par_runs = [], [], []
        for _ in range(args.repeats):
            ref_runs.append(reference())
            rep_runs.append(report(1))
            if args.workers > 1:
                par_runs.append(report(args.workers))
        n = len(rgbs)
        ref_wall = min(r[0] for r in ref_runs)
        ref_cpu = min(r[1] for r in ref_runs)
        rep_wall = min(r[0] for r in rep_runs)
        rep_cpu = min(r[1] for r in rep_runs)
        rep_stream = min(r[2] for r in rep_runs)
        ratio = ref_wall / rep_stream
        print(f"{n} images ({pixels:.2f} MP mean) in {len(source.identities)} identities, encoder {args.encoder}, "
              f"batch {args.batch_size}, best of {args.repeats}")
        print("| run | wall s | images/s | ratio to the encoder | CPU s | CPU ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| encoder embed_many (decoded images) | {ref_wall:.2f} | {n / ref_wall:.2f} | 1.00 | {ref_cpu:.2f} | 1.00 |")
        print(f"| dataset-report, 1 worker: throughput (streaming phase) | {rep_stream:.2f} | {n / rep_stream:.2f} | "
              f"{ratio:.2f} | | |")
        print(f"| dataset-report, 1 worker: end to end | {rep_wall:.2f} | {n / rep_wall:.2f} | {ref_wall / rep_wall:.2f} | "
              f"{rep_cpu:.2f} | {ref_cpu / rep_cpu:.2f} |")
        if par_runs:
            par_wall = min(r[0] for r in par_runs)
            par_stream = min(r[2] for r in par_runs)
            print(f"| dataset-report, {args.workers} workers: throughput | {par_stream:.2f} | {n / par_stream:.2f} | "
                  f"{ref_wall / par_stream:.2f} | | |")
            print(f"| dataset-report, {args.workers} workers: end to end | {par_wall:.2f} | {n / par_wall:.2f} | "
                  f"{ref_wall / par_wall:.2f} | | |")
        verdict = "PASS" if ratio >= args.target else "FAIL"
        print(f"report / encoder throughput: {ratio:.3f} (target ≥ {args.target}) → {verdict}; fixed costs "
              f"{rep_wall - rep_stream:.1f} s per report")
        return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
