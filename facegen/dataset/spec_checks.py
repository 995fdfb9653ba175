"""The bounds and number checks of a dataset spec: limits an operator can raise, finite numbers
in range, the generator's option types (:meth:`facegen.dataset.spec.DatasetSpec.validate` uses them)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from facegen.errors import InvalidArgumentError

#: the bounds a spec must stay within (README, "Limits of a dataset spec"); an operator raises
#: them with FACEGEN_DATASET_LIMITS="num_ids=5000000,images=500000000" (a spec cannot)
DEFAULT_LIMITS: dict[str, float] = {
    "spec_bytes": 16 << 20,        # size of a spec file (10,000 prompts of 1,000 characters fit)
    "spec_depth": 8,               # nesting of lists and mappings in it
    "num_ids": 1_000_000,
    "images_per_id": 10_000,
    "images": 100_000_000,         # num_ids x images_per_id
    "shard_size": 100_000,         # identities per shard
    "embedding_dim": 1024,
    "workers": 256,
    "batch_size": 1024,
    "max_attempts": 100,
    "list_items": 10_000,          # prompts, poses, noise levels
    "prompt_chars": 1_000,
    "steps": 200,                  # generator: {steps}
    "guidance_scale": 100,         # generator: {guidance_scale}
}
LIMITS_ENV = "FACEGEN_DATASET_LIMITS"


def dataset_limits() -> dict[str, float]:
    """:data:`DEFAULT_LIMITS` with the overrides of ``$FACEGEN_DATASET_LIMITS`` (``name=value,...``)."""
    limits = dict(DEFAULT_LIMITS)
    text = os.environ.get(LIMITS_ENV, "").strip()
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if name not in limits or not math.isfinite(number) or number <= 0:
            raise InvalidArgumentError(f"{LIMITS_ENV}: cannot use {item!r} (names: {', '.join(limits)}; "
                                       "values: positive numbers)")
        limits[name] = int(number) if number.is_integer() else number
    return limits


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 integer: bool = False, open_lo: bool = False, open_hi: bool = False) -> None:
    """Refuse (InvalidArgumentError naming ``name``) anything but a finite number (an integer
    with ``integer``) in the range; NaN, infinities, booleans and strings such as ``'0.4'`` too."""
    ok = _is_int(value) if integer else _is_number(value)
    if ok and lo is not None:
        ok = value > lo if open_lo else value >= lo
    if ok and hi is not None:
        ok = value < hi if open_hi else value <= hi
    if not ok:
        kind = "an integer" if integer else "a finite number"
        lo_txt = "" if lo is None else f"{'>' if open_lo else '>='} {format_bound(lo)}"
        hi_txt = "" if hi is None else f"{'<' if open_hi else '<='} {format_bound(hi)}"
        bounds = " and ".join(t for t in (lo_txt, hi_txt) if t)
        raise InvalidArgumentError(f"{name} must be {kind}{' ' + bounds if bounds else ''}, got {value!r}")


def format_bound(x: float) -> str:
    return f"{int(x):,}".replace(",", "_") if float(x).is_integer() and abs(x) >= 10_000 else f"{x:g}"


def check_generator_options(options: Mapping[str, Any], limits: Mapping[str, float]) -> None:
    """Types and bounds of the dataset generator's options (names are checked by the factory)."""
    bad = [k for k in options if not isinstance(k, str)]
    if bad:
        raise InvalidArgumentError(f"generator option names must be strings, got {bad[0]!r}")
    for name, value in options.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise InvalidArgumentError(f"generator option {name} must be a number, string or boolean, "
                                       f"got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgumentError(f"generator option {name} must be a finite number, got {value!r}")
    checks = {
        "steps": lambda v: check_number("generator steps", v, 1, limits["steps"], integer=True),
        "guidance_scale": lambda v: check_number("generator guidance_scale", v, 0, limits["guidance_scale"]),
        "id_norm": lambda v: check_number("generator id_norm", v, 0, 1e6, open_lo=True),
        "cpu_threads": lambda v: check_number("generator cpu_threads", v, 1, 1024, integer=True),
    }
    for name, check in checks.items():
        if options.get(name) is not None:
            check(options[name])
    for name in ("fast_path", "batched"):
        value = options.get(name, False)
        if not isinstance(value, bool) and not (name == "batched" and value is None):
            raise InvalidArgumentError(f"generator option {name} must be true or false, got {options[name]!r}")
