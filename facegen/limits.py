"""Limits on what one request may ask for, and finite-number checks shared by the CLI, API and app.

Each limit has a default and an environment variable that changes it (read at call time):

==========================  ==========================  =======================================
limit                       environment variable        default
==========================  ==========================  =======================================
denoising steps             ``FACEGEN_MAX_STEPS``       150 (never above half the scheduler's
                                                        ``num_train_timesteps``)
images per ``generate``     ``FACEGEN_MAX_IMAGES``      1000
prompt length (characters)  ``FACEGEN_MAX_PROMPT``      2000
guidance scale              (fixed)                     0 .. 50
==========================  ==========================  =======================================

The web app's own limits (upload size, files and bytes per request, retention) are options of
``facegen serve`` (see :mod:`facegen.cli.serve`).
"""

from __future__ import annotations

import math
import os
from numbers import Real
from typing import Any

from facegen.errors import InvalidArgumentError

MAX_STEPS_ENV = "FACEGEN_MAX_STEPS"
MAX_IMAGES_ENV = "FACEGEN_MAX_IMAGES"
MAX_PROMPT_ENV = "FACEGEN_MAX_PROMPT"
DEFAULT_MAX_STEPS = 150
DEFAULT_MAX_IMAGES = 1000
DEFAULT_MAX_PROMPT = 2000
MAX_GUIDANCE = 50.0


def env_limit(name: str, default: int) -> int:
    """A positive integer from the environment variable ``name``, else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise InvalidArgumentError(f"{name} must be >= 1, got {value}")
    return value


def max_steps(num_train_timesteps: int | None = None) -> int:
    """The most denoising steps allowed (``$FACEGEN_MAX_STEPS``), at most half the scheduler's
    training timesteps when those are known (more steps than that give black images)."""
    cap = env_limit(MAX_STEPS_ENV, DEFAULT_MAX_STEPS)
    if num_train_timesteps:
        cap = min(cap, max(1, int(num_train_timesteps) // 2))
    return cap


def steps_hint(cap: int) -> str:
    """What sets a steps limit ``cap`` (from :func:`max_steps`): ``$FACEGEN_MAX_STEPS``, or the
    scheduler's bound when that is the lower one (raising the variable would not help)."""
    if cap < env_limit(MAX_STEPS_ENV, DEFAULT_MAX_STEPS):
        return "half the scheduler's training timesteps: more give black images"
    return f"the limit; raise it with {MAX_STEPS_ENV}"


def max_images() -> int:
    return env_limit(MAX_IMAGES_ENV, DEFAULT_MAX_IMAGES)


def max_prompt() -> int:
    return env_limit(MAX_PROMPT_ENV, DEFAULT_MAX_PROMPT)


def finite(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False) -> float:
    """``value`` as a finite float within [lo, hi] (``(lo, hi]`` with ``lo_open``), else an
    :class:`InvalidArgumentError` naming ``name``. Strings are parsed ("3.5"); booleans refused."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidArgumentError(f"{name} must be a number, got {value[:40]!r}") from None
    if not isinstance(value, Real) and not hasattr(value, "__float__"):
        raise InvalidArgumentError(f"{name} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise InvalidArgumentError(f"{name} must be a finite number, got {out}")
    below = lo is not None and (out <= lo if lo_open else out < lo)
    if below or (hi is not None and out > hi):
        left = "(" if lo_open else "["
        raise InvalidArgumentError(f"{name} must be in {left}{lo if lo is not None else '-inf'}, "
                                   f"{hi if hi is not None else 'inf'}], got {out:g}")
    return out


def integer(name: str, value: Any, lo: int | None = None, hi: int | None = None, hint: str = "") -> int:
    """``value`` as an int within [lo, hi]; floats must be whole ("2.0" is 2, "2.5" is refused)."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())                      # exact: a float would round 2**63 - 1 up
    if isinstance(value, int):
        out = int(value)
    else:
        number = finite(name, value)
        if number != int(number):
            raise InvalidArgumentError(f"{name} must be a whole number, got {number:g}")
        out = int(number)
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else \
            (f">= {lo}" if lo is not None else f"<= {hi}")
        raise InvalidArgumentError(f"{name} must be {bounds}, got {out}" + (f" ({hint})" if hint else ""))
    return out


def check_prompt(name: str, text: Any) -> str | None:
    """A prompt within ``$FACEGEN_MAX_PROMPT`` characters (None stays None)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{name} must be text, got {type(text).__name__}")
    cap = max_prompt()
    if len(text) > cap:
        raise InvalidArgumentError(f"{name} is too long ({len(text):,} characters; the limit is {cap:,}, "
                                   f"set by {MAX_PROMPT_ENV})")
    return text


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, so that it can be
    written as strict JSON (``json.dumps(..., allow_nan=False)``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return json_safe(value.item())
    return value
