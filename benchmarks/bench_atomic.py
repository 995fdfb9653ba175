"""Time the one atomic writer (``facegen.io.atomic_write_bytes``) per file on this disk.

Prints, for a small (2 KB: a manifest part) and a large (1 MB: a PNG) file, the median time
per write of facegen's writer (temporary beside the file, fsync, ``os.replace``, fsync of the
folder) and of three reference runs in the same process, on the same folder, interleaved:
the same durable sequence written by hand, the previous dataset writer (fsync of the file, no
folder fsync: what the folder fsync costs) and a plain ``write_bytes`` (no durability at all).
Check: the helper costs no more than writing the sequence by hand (< 1.25x).

    python benchmarks/bench_atomic.py [--folder PATH] [--writes 40] [--rounds 5]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from _common import add_output_args, make_parser, setup_logging  # also puts the checkout on sys.path
from facegen.io.atomic import atomic_write_bytes

Writer = Callable[[Path, bytes], object]


def by_hand(path: Path, data: bytes) -> None:
    """The durable sequence, nothing else: write, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_fsync_only(path: Path, data: bytes) -> None:
    """The dataset writer before issue 12: fsync of the file, none of the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def plain(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def per_write_ms(write: Writer, folder: Path, data: bytes, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        write(folder / f"f{i % 16:02d}", data)       # replacing existing files, as a resume does
    return (time.perf_counter() - start) / n * 1e3


def main(argv: list[str] | None = None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--folder", default=None, help="where to write (default: a new folder in the temp dir)")
    p.add_argument("--writes", type=int, default=40, help="writes per round and writer")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    add_output_args(p, json_out=False)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    writers: dict[str, Writer] = {"facegen": atomic_write_bytes, "by hand": by_hand,
                                  "file fsync only": file_fsync_only, "plain": plain}
    worst = 0.0
    with contextlib.ExitStack() as stack:
        folder = Path(args.folder) if args.folder else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        print(f"folder: {folder}; median of {args.rounds} rounds of {args.writes} writes")
        print(f"{'size':>5} " + " ".join(f"{name + ' ms':>18}" for name in writers) + f" {'vs by hand':>11}")
        for label, size in (("2 KB", 2048), ("1 MB", 1 << 20)):
            data = os.urandom(size)
            times: dict[str, list[float]] = {name: [] for name in writers}
            for _ in range(args.rounds):
                for name, write in writers.items():
                    times[name].append(per_write_ms(write, folder, data, args.writes))
            med = {name: statistics.median(t) for name, t in times.items()}
            ratio = med["facegen"] / med["by hand"]
            worst = max(worst, ratio)
            print(f"{label:>5} " + " ".join(f"{med[name]:18.2f}" for name in writers) + f" {ratio:10.2f}x")
    ok = worst < 1.25
    print(f"facegen's writer: {worst:.2f}x the same sequence by hand (target < 1.25x): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
