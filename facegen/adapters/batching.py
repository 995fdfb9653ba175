"""Conditioning for batches of *different* identities in one diffusers call (dataset mode).

Three pieces the adapters' ``condition`` shares (one image per sample, many samples per call):

* :func:`pipeline_cache` — a :class:`~facegen.adapters.cache.ConditioningCache` kept on the
  pipeline, so text conditioning (a prompt, the empty negative) is encoded once per process
  and reused by every batch;
* :func:`encode_prompts` — per-sample ``prompt_embeds`` (and SDXL's pooled embeddings) for a
  list of prompts, each distinct prompt encoded once by the pipeline's own ``encode_prompt``
  (the tensors the pipeline would compute itself, so the pixels do not change);
* :func:`enable_per_sample_ip_embeds` — diffusers tiles ``ip_adapter_image_embeds`` by the
  batch size, which is right for one identity repeated and wrong for one identity per sample.
  After this call a pipeline keeps embeddings whose batch already equals the requested one.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

from facegen.errors import InvalidArgumentError
from facegen.adapters.cache import ConditioningCache

_CACHE_ATTR = "_facegen_conditioning_cache"
_PER_SAMPLE_ATTR = "_facegen_per_sample_ip_embeds"


def pipeline_cache(pipe: Any, max_items: int = 256) -> ConditioningCache:
    """The conditioning cache of ``pipe`` (created on first use, kept on the pipeline)."""
    cache = getattr(pipe, _CACHE_ATTR, None)
    if cache is None:
        cache = ConditioningCache(max_items=max_items)
        setattr(pipe, _CACHE_ATTR, cache)
    return cache


def module_key(module: Any) -> tuple[str, str, int]:
    """A cache key part that changes when ``module`` is replaced, moved or cast."""
    param = next(module.parameters())
    return str(param.dtype), str(param.device), id(module)


def is_sdxl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None or hasattr(pipe, "_get_add_time_ids")


def encode_prompts(pipe: Any, prompts: Sequence[str], negatives: Sequence[str | None], cfg: bool) -> dict[str, Any]:
    """``prompt_embeds`` (+ negatives, + SDXL pooled) for one prompt per sample, batch-major.

    Each distinct (prompt, negative) pair is encoded once per pipeline by its ``encode_prompt``
    with ``num_images_per_prompt=1``; the per-sample tensors are concatenations of those rows.
    """
    import torch

    if len(prompts) != len(negatives):
        raise InvalidArgumentError(f"got {len(prompts)} prompts and {len(negatives)} negative prompts")
    if not prompts:
        raise InvalidArgumentError("no prompts to encode")
    cache = pipeline_cache(pipe)
    sdxl = is_sdxl(pipe)
    device = pipe._execution_device
    encoder = pipe.text_encoder if pipe.text_encoder is not None else pipe.text_encoder_2
    rows = []
    for prompt, negative in zip(prompts, negatives):
        key = ("prompt", "sdxl" if sdxl else "sd", prompt, negative, bool(cfg), module_key(encoder))
        # SD and SDXL pipelines name these arguments alike (SDXL's prompt_2 / negative_2 stay None)
        rows.append(cache.get(key, lambda p=prompt, n=negative: pipe.encode_prompt(
            prompt=p, device=device, num_images_per_prompt=1, do_classifier_free_guidance=cfg, negative_prompt=n)))
    names = (("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
             if sdxl else ("prompt_embeds", "negative_prompt_embeds"))
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        parts = [r[i] for r in rows]
        if any(p is None for p in parts):
            continue
        out[name] = torch.cat(parts) if len(parts) > 1 else parts[0]
    return out


def _prepare_per_sample(self: Any, ip_adapter_image: Any, ip_adapter_image_embeds: Any, device: Any,
                        num_images_per_prompt: int, do_classifier_free_guidance: bool) -> Any:
    """``prepare_ip_adapter_image_embeds`` that keeps pre-batched embeddings (one per sample)."""
    import torch

    rows = (2 if do_classifier_free_guidance else 1) * num_images_per_prompt
    if (ip_adapter_image_embeds is not None and num_images_per_prompt > 1
            and all(e.shape[0] == rows for e in ip_adapter_image_embeds)):
        # already [negatives of every sample, positives of every sample]: the layout diffusers builds
        return [torch.as_tensor(e).to(device=device) for e in ip_adapter_image_embeds]
    return type(self).prepare_ip_adapter_image_embeds(self, ip_adapter_image, ip_adapter_image_embeds, device,
                                                      num_images_per_prompt, do_classifier_free_guidance)


def enable_per_sample_ip_embeds(pipe: Any) -> Any:
    """Let ``pipe`` take ``ip_adapter_image_embeds`` with one row per sample (``[neg..., pos...]``
    under CFG) besides diffusers' one row per prompt.  Idempotent; returns ``pipe``.

    Unambiguous: diffusers' own rule would turn B per-sample rows into B x B, which no pipeline
    can use, so only that case changes meaning.
    """
    if not hasattr(pipe, "prepare_ip_adapter_image_embeds"):
        raise InvalidArgumentError(f"{type(pipe).__name__} takes no IP-Adapter embeddings")
    if not getattr(pipe, _PER_SAMPLE_ATTR, False):
        pipe.prepare_ip_adapter_image_embeds = types.MethodType(_prepare_per_sample, pipe)
        setattr(pipe, _PER_SAMPLE_ATTR, True)
    return pipe
