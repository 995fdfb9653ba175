"""Scale of facegen's dataset machinery (no generator cost): growth exponents and 1M-identity projections.

A null generator (one fixed 8x8 image; watermark and C2PA off) leaves only facegen's own work.
Each figure is measured at several sizes, each size in a fresh spawned process (time, and peak
RSS above that process's RSS after imports); the growth exponent is the least-squares slope of
log(time) on log(size), and the projection to 1M identities / 10M images is
``t(largest) * (target / largest) ** exponent``.  Measured:

* ``sample``: identity sampling (``sample_identities``, dim 512, the default max cosine): pairwise
  screening against every accepted identity, so quadratic in identities by design;
* ``run``: ``run_dataset`` end to end on a local folder (sampling, shards, manifest, stats, card),
  per image: the machinery's cost beside a generator;
* ``merge``: ``write_manifest`` + ``dataset_stats`` over synthetic finished parts (100 ids per
  shard, 10 images per id, records shaped like the real ones);
* ``resume``: the resume scan (``shard_problems``: one listing, ``files.json`` 1000 at a time)
  against a local S3 server (moto, 127.0.0.1) holding 4 objects per shard;
* ``pairs``: dataset-report's impostor-pair sampling (``_impostor_pairs``, the default 1M pairs);
* ``centroids``: dataset-report's nearest-other-identity search over identity centroids (dim 512):
  quadratic in identities (a documented limit, see RESULTS.md).

    python benchmarks/bench_dataset_scale.py [--quick] [--json out.json]

The reference of each row is its smallest size, measured in the same invocation (the ratio
column is time / reference time against size / reference size).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  - puts the checkout on sys.path

IMAGES_PER_ID = 10
IDS_PER_SHARD = 100
TARGET_IDS = 1_000_000
TARGET_IMAGES = 10_000_000


def _status(field: str) -> int:
    """VmRSS / VmHWM (peak RSS) of this process, bytes (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS (Linux ``clear_refs`` 5); return the current RSS."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status("VmRSS")


def _peak_above(base: int) -> int:
    return max(0, _status("VmHWM") - base)


# ------------------------------------------------------------------------------------------- the pieces
def _sample(n: int) -> dict[str, Any]:
    from facegen.dataset.identities import sample_identities

    t = time.perf_counter()
    sample_identities(n, 512, seed=0)
    return {"seconds": time.perf_counter() - t}


def _null_generator(items: list) -> list:
    return [np.zeros((8, 8, 3), np.uint8)] * len(items)


def _run(n_ids: int) -> dict[str, Any]:
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    with tempfile.TemporaryDirectory() as d:
        spec = DatasetSpec(out=f"{d}/ds", model="tiny", num_ids=n_ids, images_per_id=IMAGES_PER_ID, seed=0,
                           format="webdataset", shard_size=IDS_PER_SHARD, filters=False, embedding_dim=512,
                           provenance={"watermark": False, "c2pa": False})
        t = time.perf_counter()
        summary = run_dataset(spec, _null_generator, progress=False)
        seconds = time.perf_counter() - t
    assert summary.accepted == n_ids * IMAGES_PER_ID
    return {"seconds": seconds, "per_image_ms": 1000 * seconds / summary.accepted}


def _synthetic_dataset(loc: Any, n_ids: int) -> int:
    """Finished parts (part, stats, files.json, a stand-in tar) of ``n_ids`` identities; returns shards."""
    from facegen.dataset import writers as W
    from facegen.dataset.spec import DatasetSpec
    from facegen.dataset.stats import SPEC_FILE

    spec = DatasetSpec(out=loc.url, model="tiny", num_ids=n_ids, images_per_id=IMAGES_PER_ID, seed=0,
                       format="webdataset", shard_size=IDS_PER_SHARD, filters=False, embedding_dim=512)
    spec = spec.resolved()
    loc.write_bytes(SPEC_FILE, spec.to_yaml(runtime=False, extra={"fingerprint": spec.fingerprint()}).encode())
    shards = math.ceil(n_ids / IDS_PER_SHARD)
    tar = b"\0" * 10240
    tar_sha = __import__("hashlib").sha256(tar).hexdigest()
    batch: dict[str, bytes] = {}
    for k in range(shards):
        records = [{"key": f"{i:06d}_{j:03d}", "identity": i, "index": j, "attempt": 0, "seed": 1234567 + i * 10 + j,
                    "noise_level": 0.1, "embedding_sha256": "0" * 64, "identity_sha256": "1" * 64, "prompt": "",
                    "pose": None, "scores": None, "crop": None, "shard": W.tar_name(k)}
                   for i in range(k * IDS_PER_SHARD, min(n_ids, (k + 1) * IDS_PER_SHARD)) for j in range(IMAGES_PER_ID)]
        part = b"".join(W.json_bytes(r) + b"\n" for r in records)
        stats = W.json_bytes({"shard": k, "accepted": len(records), "generated": len(records), "rejected": {},
                              "dropped": 0}) + b"\n"
        sha = __import__("hashlib").sha256
        files = {W.part_name(k): {"size": len(part), "sha256": sha(part).hexdigest()},
                 W.stats_name(k): {"size": len(stats), "sha256": sha(stats).hexdigest()},
                 W.tar_name(k): {"size": len(tar), "sha256": tar_sha}}
        batch.update({W.part_name(k): part, W.stats_name(k): stats, W.tar_name(k): tar,
                      W.files_name(k): W.json_bytes({"shard": k, "files": files}) + b"\n"})
        if len(batch) >= 4000 or k == shards - 1:
            if loc.is_local:
                for name, data in batch.items():
                    p = loc.path / name
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(data)
            else:
                loc.fs.pipe({loc._path(name): data for name, data in batch.items()})
            batch = {}
    return shards


def _merge(n_ids: int) -> dict[str, Any]:
    from facegen.dataset import writers as W
    from facegen.dataset.stats import dataset_stats
    from facegen.io.location import open_location

    with tempfile.TemporaryDirectory() as d:
        loc = open_location(f"{d}/ds")
        shards = _synthetic_dataset(loc, n_ids)
        base = _reset_peak()
        t = time.perf_counter()
        lines = W.write_manifest(loc, shards)
        t_manifest = time.perf_counter() - t
        summary = dataset_stats(loc)
        seconds = time.perf_counter() - t
        size = (loc.path / W.MANIFEST).stat().st_size
    assert lines == summary.accepted == n_ids * IMAGES_PER_ID
    return {"seconds": seconds, "manifest_seconds": t_manifest, "manifest_bytes": size,
            "peak_rss_above_start": _peak_above(base)}


def _resume(n_shards: int) -> dict[str, Any]:
    with socket.socket() as sock:             # a free port for the server (its own process: its own GIL)
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection((host, port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://{host}:{port}")
    import boto3

    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="bench-scale")
    from facegen.dataset import writers as W
    from facegen.io.location import open_location

    loc = open_location("s3://bench-scale/ds")
    t = time.perf_counter()
    shards = _synthetic_dataset(loc, n_shards * IDS_PER_SHARD)
    populate = time.perf_counter() - t
    base = _reset_peak()
    t = time.perf_counter()
    problems = W.shard_problems(loc, list(range(shards)), "webdataset", checksums=False)
    seconds = time.perf_counter() - t
    peak = _peak_above(base)
    server.terminate()
    server.wait()
    assert all(p is None for p in problems.values())
    return {"seconds": seconds, "objects": 4 * shards + 1, "populate_seconds": populate,
            "peak_rss_above_start": peak}


def _pairs(n_images: int) -> dict[str, Any]:
    from facegen.dataset.report_metrics import DEFAULT_MAX_IMPOSTOR_PAIRS, _impostor_pairs

    labels = np.repeat(np.arange(n_images // IMAGES_PER_ID), IMAGES_PER_ID)
    t = time.perf_counter()
    ii, _, sampled = _impostor_pairs(labels, DEFAULT_MAX_IMPOSTOR_PAIRS, np.random.default_rng(0))
    return {"seconds": time.perf_counter() - t, "pairs": int(len(ii)), "sampled": bool(sampled)}


def _centroids(n_ids: int) -> dict[str, Any]:
    from facegen.dataset.report_metrics import _nearest

    x = np.random.default_rng(0).standard_normal((n_ids, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    _nearest(x, x, "cosine", exclude_self=True, threshold=0.5)
    return {"seconds": time.perf_counter() - t}


PIECES: dict[str, tuple[Callable[[int], dict[str, Any]], str, int]] = {
    # name: (function, what the size counts, the 1M-identity / 10M-image target in that unit)
    "sample": (_sample, "identities", TARGET_IDS),
    "run": (_run, "identities", TARGET_IDS),
    "merge": (_merge, "identities", TARGET_IDS),
    "resume": (_resume, "shards", TARGET_IDS // IDS_PER_SHARD),
    "pairs": (_pairs, "images", TARGET_IMAGES),
    "centroids": (_centroids, "identities", TARGET_IDS),
}
FULL = {"sample": [2000, 4000, 8000, 16000], "run": [300, 1000, 3000], "merge": [10_000, 30_000, 100_000],
        "resume": [100, 300, 1000], "pairs": [100_000, 1_000_000, 10_000_000], "centroids": [2000, 4000, 8000]}
QUICK = {"sample": [1000, 2000], "run": [100, 300], "merge": [1000, 10_000], "resume": [100, 300],
         "pairs": [100_000, 1_000_000], "centroids": [1000, 2000]}


def _child(name: str, size: int, queue: Any) -> None:
    import facegen.dataset.runner  # noqa: F401 - imports before the baseline
    import facegen.dataset.report_metrics  # noqa: F401
    base = _reset_peak()
    try:
        out = PIECES[name][0](size)
        out.setdefault("peak_rss_above_start", _peak_above(base))
        queue.put(out)
    except BaseException as exc:  # noqa: BLE001 - reported in the table
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure(name: str, size: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, size, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def exponent(sizes: list[int], seconds: list[float]) -> float | None:
    if len(sizes) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-6)), 1)[0])


def main() -> int:
    p = _common.make_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--only", default=None, help="comma-separated pieces: " + ",".join(PIECES))
    p.add_argument("--sizes", default=None, help="comma-separated sizes (with one --only piece)")
    _common.add_output_args(p)
    args = p.parse_args()
    plan = QUICK if args.quick else FULL
    names = args.only.split(",") if args.only else list(PIECES)
    if args.sizes:
        plan = {**plan, **{n: [int(x) for x in args.sizes.split(",")] for n in names}}
    results: dict[str, Any] = {"machine": "2-core shared x86_64 VM, no GPU, loaded by other agents",
                               "versions": _common.versions(), "pieces": {}}
    print(f"{'piece':10} {'unit':10} {'size':>10} {'seconds':>9} {'ratio':>7} {'peak MiB':>9}  extra")
    for name in names:
        _, unit, target = PIECES[name]
        rows = []
        for size in plan[name]:
            out = measure(name, size)
            if "error" in out:
                print(f"{name:10} {unit:10} {size:>10} failed: {out['error']}")
                break
            rows.append((size, out))
            ref_size, ref = rows[0]
            ratio = (out["seconds"] / max(ref["seconds"], 1e-9)) / (size / ref_size)
            extra = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()
                     if k not in ("seconds", "peak_rss_above_start")}
            print(f"{name:10} {unit:10} {size:>10} {out['seconds']:9.3f} {ratio:7.2f} "
                  f"{out['peak_rss_above_start'] / 2**20:9.1f}  {json.dumps(extra)}", flush=True)
        sizes = [s for s, _ in rows]
        secs = [o["seconds"] for _, o in rows]
        b = exponent(sizes, secs)
        # the projection uses the exponent of the two largest sizes (fixed costs fade there)
        top = exponent(sizes[-2:], secs[-2:])
        proj = secs[-1] * (target / sizes[-1]) ** max(top, 0.0) if top is not None else None
        results["pieces"][name] = {"unit": unit, "rows": [{"size": s, **o} for s, o in rows], "exponent": b,
                                   "exponent_top": top, "target": target, "projected_seconds": proj}
        if b is not None:
            print(f"{name:10} growth exponent {b:.2f} (all sizes), {top:.2f} (two largest); projected at "
                  f"{target:,} {unit}: {proj:,.0f} s ({proj / 3600:.2f} h)", flush=True)
    if args.json:
        _common.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
