"""The runner's handle on a preset's generator: picklable, built lazily once per process.

A run ships its ``generate_fn`` to every worker process, Ray actor and accelerate rank; a
:class:`PipelineGenerateFn` travels as its arguments and builds the generation pipeline
(:func:`facegen.dataset.generate.make_dataset_generate_fn`) on first use where it runs.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from facegen.dataset.generate import make_dataset_generate_fn
from facegen.dataset.shard import GenerateFn
from facegen.dataset.variation import WorkItem
from facegen.errors import InvalidArgumentError
from facegen.paths import DEFAULT_ACCESS, ModelAccess

#: the factory's own arguments (the rest are the spec's ``generator:`` options)
_FIXED = ("preset", "access")


class PipelineGenerateFn:
    """A picklable ``generate_fn`` that builds the real generation pipeline lazily, once per
    process (worker process, Ray actor, accelerate rank).

    The pipeline comes from ``factory`` (a module-level function, so that it pickles by name),
    called as ``factory(preset=..., access=..., **options)`` (a :class:`~facegen.paths.ModelAccess`)
    and returning a ``generate_fn(items: list[WorkItem]) -> list[RGB uint8 arrays]`` that seeds
    each item with ``torch.Generator(device).manual_seed(item.seed)`` and conditions it on
    ``item.embedding`` (unit norm; rescale for raw-vector adapters), ``item.prompt`` and
    ``item.pose``.
    """

    def __init__(self, preset: str, access: ModelAccess = DEFAULT_ACCESS,
                 factory: Callable[..., GenerateFn] = make_dataset_generate_fn, **options: Any) -> None:
        self.preset = preset
        self.access = access
        self.factory = factory
        self.options = options
        self._fn: GenerateFn | None = None
        self._check_options()

    def _check_options(self) -> None:
        """Refuse option names the factory does not take (a typo in a spec's ``generator:``),
        before anything runs."""
        params = inspect.signature(self.factory).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        unknown = sorted(set(self.options) - set(params))
        if unknown:
            known = [n for n in params if n not in _FIXED]
            raise InvalidArgumentError(f"unknown generator option(s) {', '.join(unknown)}; "
                                       f"the options are: {', '.join(known)}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fn"] = None  # each process builds its own pipeline
        return state

    @property
    def device(self) -> str | None:
        """The device the pipeline is built on (None: auto)."""
        return self.access.device

    def on_device(self, device: str) -> PipelineGenerateFn:
        """A copy that builds its pipeline on ``device`` (a worker's or rank's own GPU)."""
        clone = copy.copy(self)
        clone.access = dataclasses.replace(self.access, device=device)
        clone._fn = None
        return clone

    def _build(self) -> GenerateFn:
        return self.factory(preset=self.preset, access=self.access, **self.options)

    def __call__(self, items: list[WorkItem]) -> list[np.ndarray]:
        if self._fn is None:
            self._fn = self._build()
        return self._fn(items)


def make_generate_fn(preset: str, access: ModelAccess = DEFAULT_ACCESS, **options: Any) -> PipelineGenerateFn:
    """The generator of a preset for :func:`facegen.dataset.runner.run_dataset` (pipeline built
    on first use)."""
    return PipelineGenerateFn(preset, access=access, **options)


def generates_on_gpu(generate_fn: Any) -> bool:
    """Whether a preset generator will run on CUDA (its device, else CUDA when available)."""
    if not isinstance(generate_fn, PipelineGenerateFn):
        return False
    if generate_fn.device is not None:
        return str(generate_fn.device).startswith("cuda")
    import torch  # noqa: PLC0415 - only for a preset generator, which needs torch anyway

    return torch.cuda.is_available()
