"""Numbers and text from a request, checked: a malformed or non-finite value is a one-line
:class:`~facegen.errors.InvalidArgumentError` naming the field, never an internal error.

The page's sliders bound what a browser sends, but the HTTP API takes anything ("abc", "nan",
1e999), so every handler reads its values through these.
"""

from __future__ import annotations

import secrets
from typing import Any

from facegen import limits
from facegen.choices import APP_SEED
from facegen.errors import InvalidArgumentError

MAX_SEED = int(APP_SEED.hi)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def int_value(name: str, value: Any, lo: int | None = None, hi: int | None = None,
              default: int | None = None) -> int | None:
    """An integer field (``None``/empty → ``default``)."""
    if _blank(value):
        return default
    return limits.integer(name, value, lo, hi)


def float_value(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                default: float | None = None, lo_open: bool = False) -> float | None:
    """A finite float field (``None``/empty → ``default``)."""
    if _blank(value):
        return default
    return limits.finite(name, value, lo, hi, lo_open=lo_open)


def text_value(name: str, value: Any) -> str | None:
    """A text field within ``$FACEGEN_MAX_PROMPT`` characters, stripped (empty → ``None``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        from facegen.errors import InvalidArgumentError  # noqa: PLC0415
        raise InvalidArgumentError(f"{name} must be text, got {type(value).__name__}")
    limits.check_prompt(name, value)
    return value.strip() or None


def run_seeds(seed: Any, n: int) -> list[int]:
    """Per-image seeds: ``seed, seed+1, ...``; a negative or empty seed draws a random one.

    Every image gets its own explicit seed, so "reuse this seed" with one image gives the
    same picture back.
    """
    value = int_value("seed", seed)
    if value is None or value < 0:
        base = secrets.randbelow(MAX_SEED - n)
    else:
        base = value
        if base > MAX_SEED:
            raise InvalidArgumentError(f"seed must be between 0 and {MAX_SEED}, got {base}")
    return [(base + i) % (MAX_SEED + 1) for i in range(n)]
