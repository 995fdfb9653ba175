"""The choices a user makes, written once: the CLI (argparse ``choices``, ``type``, defaults and
help), the app (widget values and ranges) and the Python API's checks all read them from here.

A :class:`Choice` is a closed set of words with its default; a :class:`Span` is a bounded number
with its default.  ``check`` gives the one-line :class:`~facegen.errors.InvalidArgumentError`
that names the field and the allowed values, the same on every route.  What a *preset* can do
(which presets take a prompt, several people, ...) is not here but in the capability query of
the family registry (:func:`facegen.adapters.registry.presets_that`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from facegen.errors import InvalidArgumentError


@dataclass(frozen=True)
class Choice:
    """A closed set of words (``values``) and the one used when none is given."""

    name: str
    values: tuple[str, ...]
    default: str | None = None

    def check(self, value: Any, what: str | None = None) -> str:
        if value not in self.values:
            raise InvalidArgumentError(f"{what or self.name} must be one of {', '.join(self.values)}, got {value!r}")
        return value

    def words(self) -> str:
        """``a, b or c``: the values in a help text."""
        return ", ".join(self.values[:-1]) + f" or {self.values[-1]}" if len(self.values) > 1 else self.values[0]


@dataclass(frozen=True)
class Span:
    """A number in ``lo..hi`` (``lo`` excluded when ``lo_open``), integer or not, with its default."""

    name: str
    lo: int | float
    hi: int | float
    default: int | float | None = None
    integer: bool = False
    lo_open: bool = False

    def text(self) -> str:
        lo = int(self.lo) if self.integer else self.lo
        hi = int(self.hi) if self.integer else self.hi
        return f"({lo:g}, {hi:g}]" if self.lo_open else (f"{lo}..{hi}" if self.integer else f"[{lo:g}, {hi:g}]")

    def check(self, value: Any, what: str | None = None) -> Any:
        name = what or self.name
        bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
        if not bad and self.integer and not float(value).is_integer():
            bad = True
        if bad or not math.isfinite(float(value)):
            raise InvalidArgumentError(f"{name} must be {'an integer' if self.integer else 'a number'} in "
                                       f"{self.text()}, got {value!r}")
        if value > self.hi or value < self.lo or (self.lo_open and value == self.lo):   # exact for big ints
            raise InvalidArgumentError(f"{name} must be in {self.text()}, got {value!r}")
        return int(value) if self.integer else float(value)


# ----------------------------------------------------------------------------- people and faces
#: the word the aging prompt describes the person with ("photo of a 70 year old woman"): each
#: choice's nouns up to 15 years and older
AGE_NOUNS: dict[str, tuple[str, str]] = {"person": ("child", "person"), "woman": ("girl", "woman"),
                                         "man": ("boy", "man")}
GENDER = Choice("gender", tuple(AGE_NOUNS), "person")
#: ages the aging job takes, target and current (years)
AGE = Span("age", 0, 110, integer=True)
#: which faces of a photo an edit touches (an index N, left to right, is a choice too)
FACE = Choice("face", ("largest", "all"), "largest")
#: where a single face goes in a generated image (a preset takes some of them: ``face_layouts``)
FACE_LAYOUT = Choice("face layout", ("reference", "portrait"))
#: where several people go in one generated image (face boxes are the other form)
PEOPLE_LAYOUT = Choice("layout", ("side-by-side", "group"), "side-by-side")

# ----------------------------------------------------------------------------- edit strengths
#: how much of the face a diffusion swap regenerates (< 1 keeps the target's pose and light)
SWAP_STRENGTH = Span("strength", 0.0, 1.0, 0.85, lo_open=True)
#: a restoration's strength; none given: adapted to the measured damage
RESTORE_STRENGTH = Span("strength", 0.0, 1.0, None, lo_open=True)
#: the face swap engines: diffusion inpainting of the face crop, or the inswapper_128 network
SWAP_ENGINE = Choice("engine", ("diffusion", "inswapper"), "diffusion")

# ----------------------------------------------------------------------------- runs
#: seeds of the CLI and the API: image i gets seed + i, all within a 64-bit signed range
SEED = Span("seed", 0, 2**63 - 1, integer=True)
#: the app's seeds stay below 2**32 (a browser's number holds them exactly)
APP_SEED = Span("seed", 0, 2**32 - 1, integer=True)
#: compute precisions of a pipeline
DTYPE = Choice("dtype", ("fp32", "fp16", "bf16"))
