"""What the benchmark scripts share: arguments and logging, timing, peak memory, image
equality, and the report's JSON and version line.

Each script in ``benchmarks/`` imports it as ``_common`` (the script's folder is first on
``sys.path`` when it runs); importing it also puts the checkout on ``sys.path`` so the scripts
run from a checkout without installing facegen.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:                    # `python benchmarks/<script>.py` from a checkout
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("benchmarks")

# ----------------------------------------------------------------------------- arguments, logging


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc`` (a script's module docstring)."""
    return argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_output_args(p: argparse.ArgumentParser, json_out: bool = True) -> None:
    """The flags every benchmark takes: ``--json PATH`` (all results) and ``-v/--verbose`` (diagnostics)."""
    if json_out:
        p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument("-v", "--verbose", action="store_true")


def setup_logging(verbose: bool = False, quiet_libraries: bool = True) -> None:
    """Diagnostics on stderr (INFO with ``verbose``); diffusers/transformers chatter off unless verbose."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if quiet_libraries and not verbose:          # library chatter (safety-checker notice, dtype casts) off
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.set_verbosity_error()
        tlog.set_verbosity_error()


# ----------------------------------------------------------------------------- timing


def sync(device: Any) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere."""
    if getattr(device, "type", device) == "cuda":
        import torch

        torch.cuda.synchronize(device)


@dataclass
class RunStats:
    """Timed runs of one path at one batch size, and what the last one returned."""

    times: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    host_syncs: int | None = None
    images: np.ndarray | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed(fn: Callable[[], Any], device: Any, stats: RunStats) -> None:
    """One call of ``fn``, timed between device synchronisations, appended to ``stats``."""
    sync(device)
    t0 = time.perf_counter()
    images = fn()
    sync(device)
    stats.times.append(time.perf_counter() - t0)
    stats.images = images


def median_time(fn: Callable[[], Any], repeats: int, device: Any = "cpu") -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    stats = RunStats()
    for _ in range(repeats):
        timed(fn, device, stats)
    return stats.median


# ----------------------------------------------------------------------------- memory (CUDA)


def peak_memory(fn: Callable[[], Any], device: Any, own_weights: int, graph_pools: bool) -> int:
    """One untimed call's peak GPU memory for one path, though both pipelines are resident:
    its transient peak (reserved memory over the resident set, after emptying the cache) + its
    own weights + (``graph_pools``) the CUDA-graph private pools it holds between calls, which
    replays reuse without allocating (reserved but not allocated after emptying the cache)."""
    if device.type != "cuda":
        return 0
    import torch

    sync(device)
    torch.cuda.empty_cache()
    resident = torch.cuda.memory_reserved(device)
    pools = max(0, resident - torch.cuda.memory_allocated(device)) if graph_pools else 0
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_reserved(device) - resident + own_weights + pools


def count_host_syncs(fn: Callable[[], Any], device: Any) -> int | None:
    """Host-device synchronisations during one untimed call, counted with CUDA's sync debug mode
    (each synchronising op warns once).  None on CPU, or where the mode is unavailable."""
    if device.type != "cuda":
        return None
    import warnings

    import torch

    try:
        torch.cuda.set_sync_debug_mode("warn")
    except (RuntimeError, AttributeError) as e:            # pragma: no cover - depends on the build
        logger.info("sync debug mode unavailable: %s", e)
        return None
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in seen)


# ----------------------------------------------------------------------------- image equality


def compare(ref: np.ndarray, ours: np.ndarray) -> dict[str, float]:
    """uint8 image batches → max / p99.9 / mean |diff| (levels) and the worst image's PSNR (dB)."""
    if ref.shape != ours.shape:
        raise ValueError(f"image batches differ in shape: {ref.shape} vs {ours.shape}")
    d = np.abs(ref.astype(np.int16) - ours.astype(np.int16))
    mse = (d.astype(np.float64) ** 2).reshape(len(d), -1).mean(axis=1)
    psnr = [math.inf if m == 0 else 10 * math.log10(255.0**2 / m) for m in mse]
    return {"max_abs": int(d.max()), "p999_abs": float(np.percentile(d, 99.9)), "mean_abs": float(d.mean()),
            "min_psnr_db": float(min(psnr))}


@dataclass(frozen=True)
class Tolerance:
    """How close two image batches must be to count as the same (see :func:`compare`)."""

    min_psnr_db: float
    max_p999: float
    max_abs: int

    def ok(self, c: dict[str, float]) -> bool:
        return c["min_psnr_db"] >= self.min_psnr_db and c["p999_abs"] <= self.max_p999 and c["max_abs"] <= self.max_abs

    def describe(self) -> str:
        return f"PSNR >= {self.min_psnr_db:g} dB, p99.9 |diff| <= {self.max_p999:g}, max |diff| <= {self.max_abs}"


def fmt_psnr(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}"


# ----------------------------------------------------------------------------- report


def json_safe(x: Any) -> Any:
    """``x`` with infinite floats as the string ``'inf'`` (JSON has no infinity)."""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return x


def write_json(path: Path | str, result: Any) -> None:
    """Write ``result`` (made :func:`json_safe`) to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(result), indent=2))


def versions() -> str:
    """The diffusers and transformers versions, for the report's header."""
    import diffusers
    import transformers

    return f"diffusers {diffusers.__version__}, transformers {transformers.__version__}"
