"""Deprecated: the fast path moved to :mod:`facegen.speed` (``engine`` and ``presets``).

This module re-exports the old names for one release; import from ``facegen.speed.engine``,
``facegen.speed.presets`` and ``facegen.adapters.cache`` instead.  ``get_preset`` is now
:func:`facegen.speed.presets.get_fast_preset` (``facegen.models.get_preset`` is the model one).
"""

from __future__ import annotations

import warnings

import torch

from facegen.adapters.cache import ConditioningCache
from facegen.errors import InvalidArgumentError
from facegen.speed.engine import (
    AppliedFastPath,
    FastPathConfig,
    applied_options,
    clone_pipeline,
    images_to_uint8,
    make_generators,
    optimize_pipeline,
    unmerged_lora_layers,
)
from facegen.speed.presets import FAST_PRESETS, EarlyCFGCutoff, FastPreset, apply_preset, get_fast_preset
from facegen.speed.torch_compile import DENOISER_NAMES, set_compile_cache

__all__ = [
    "DENOISER_NAMES", "FAST_PRESETS", "AppliedFastPath", "ConditioningCache", "EarlyCFGCutoff", "FastPathConfig",
    "FastPreset", "applied_options", "apply_preset", "clone_pipeline", "expand_for_batch", "get_preset",
    "images_to_uint8", "make_generators", "optimize_pipeline", "set_compile_cache", "unmerged_lora_layers",
]

warnings.warn("facegen.pipelines.fastpath is deprecated: import from facegen.speed.engine / facegen.speed.presets",
              DeprecationWarning, stacklevel=2)


def get_preset(name: str | FastPreset) -> FastPreset:
    """Deprecated alias of :func:`facegen.speed.presets.get_fast_preset`."""
    warnings.warn("facegen.pipelines.fastpath.get_preset is deprecated: use facegen.speed.presets.get_fast_preset",
                  DeprecationWarning, stacklevel=2)
    return get_fast_preset(name)


def expand_for_batch(embeds: torch.Tensor, n: int) -> torch.Tensor:
    """Deprecated (nothing in facegen uses it; kept for one release): ``(K, ...)`` per-identity
    embeddings → ``(K*n, ...)``, identity-major, the order of diffusers' ``num_images_per_prompt``."""
    warnings.warn("facegen.pipelines.fastpath.expand_for_batch is deprecated: use embeds.repeat_interleave(n, 0)",
                  DeprecationWarning, stacklevel=2)
    if n < 1:
        raise InvalidArgumentError(f"images per identity must be >= 1, got {n}")
    return embeds.repeat_interleave(n, dim=0) if n > 1 else embeds
