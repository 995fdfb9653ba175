"""The fast path's engine: exact options that keep the pixels, applied to a loaded pipeline.

``optimize_pipeline(pipe, cfg)`` applies *exact* engine options to any diffusers Stable
Diffusion / SDXL pipeline (with or without ControlNet or IP-Adapter): the same images as the
plain pipeline at the same dtype, within the tolerance the benchmark states
(``benchmarks/bench_generation.py``), only faster.  The options:

* dtype: ``'auto'`` keeps a half-precision pipeline as it is on CUDA (fp16 otherwise), fp32 on CPU;
* fp32 VAE decode where the pipeline would upcast anyway (SDXL's VAE overflows in fp16): the VAE
  stays in fp32 instead of being converted back and forth on every call;
* SDPA attention (flash / memory-efficient kernels on CUDA), fused QKV projections (never on a
  module whose unmerged LoRA layers the fusion would drop), channels-last convolutions;
* ``torch.compile`` of the UNet/ControlNet/VAE decoder (CUDA by default, CPU on request), with
  static shapes, CUDA graphs (``mode='reduce-overhead'``) and a persistent compile cache under
  ``facegen.paths.cache_dir()/torchinductor`` (:mod:`facegen.speed.torch_compile`).

Options that change the pixels live in :mod:`facegen.speed.presets`.  Guidance is batched by
diffusers itself (one UNet call on ``[uncond, cond]``); a batch is made with one
``torch.Generator`` per image (:func:`make_generators`), so image *i* of a batch has the pixels
of a single run with the same seed; :func:`images_to_uint8` converts on the device.
"""

from __future__ import annotations

import copy
import logging
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from facegen.errors import InvalidArgumentError
from facegen.speed.config import AppliedFastPath, FastPathConfig
from facegen.speed.torch_compile import DENOISER_NAMES, apply_compile

logger = logging.getLogger(__name__)


_APPLIED_ATTR = "_facegen_fastpath"


# ----------------------------------------------------------------------------- optimize


def pipeline_device(pipe: Any) -> torch.device:
    """The device ``pipe`` runs on (its execution device; CPU for an empty pipeline)."""
    for name in ("_execution_device", "device"):
        try:
            dev = getattr(pipe, name)
        except Exception as e:  # noqa: BLE001 - diffusers raises from these on empty pipelines
            logger.debug("pipeline.%s unavailable: %s", name, e)
            continue
        if isinstance(dev, torch.device):
            return dev
    return torch.device("cpu")


def _modules(pipe: Any, names: Sequence[str]) -> list[tuple[str, torch.nn.Module]]:
    out = []
    for name in names:
        m = getattr(pipe, name, None)
        if isinstance(m, torch.nn.Module):
            out.append((name, m))
    return out


def _processor_classes(module: torch.nn.Module) -> set[str]:
    procs = getattr(module, "attn_processors", None)
    if not procs:
        return set()
    return {type(p).__name__ for p in procs.values()}


def _use_sdpa(module: torch.nn.Module) -> bool:
    """Swap legacy ``AttnProcessor`` for ``AttnProcessor2_0``; leave every other processor alone."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    procs = getattr(module, "attn_processors", None)
    if not procs or not hasattr(module, "set_attn_processor"):
        return False
    if not any(type(p) is AttnProcessor for p in procs.values()):
        return False
    module.set_attn_processor({k: AttnProcessor2_0() if type(p) is AttnProcessor else p for k, p in procs.items()})
    return True


_STOCK_PROCESSORS = {"AttnProcessor", "AttnProcessor2_0", "FusedAttnProcessor2_0"}


def unmerged_lora_layers(module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s PEFT (LoRA) layers that act in their forward, i.e. whose active
    adapters are not merged into the base weights.  A fused q/k/v projection is built from
    the base weights only (diffusers' ``fuse_projections``), so it would drop exactly these."""
    if not getattr(module, "peft_config", None):
        return []
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft_config without peft
        return []
    names = []
    for name, sub in module.named_modules():
        if isinstance(sub, BaseTunerLayer):
            active = sub.active_adapters               # peft: always a list
            merged = set(getattr(sub, "merged_adapters", ()))
            if not getattr(sub, "disable_adapters", False) and any(a not in merged for a in active):
                names.append(name)
    return names


def _fuse_qkv(module: torch.nn.Module) -> str | None:
    """Fuse q/k/v; return None when done, else why not."""
    if not hasattr(module, "fuse_qkv_projections"):
        return "no fuse_qkv_projections()"
    classes = _processor_classes(module)
    if not classes:
        return "no attention"
    if classes == {"FusedAttnProcessor2_0"}:
        return "already fused"
    if not classes <= _STOCK_PROCESSORS:
        return f"custom attention processors {sorted(classes - _STOCK_PROCESSORS)} (IP-Adapter?) would be replaced"
    lora = unmerged_lora_layers(module)
    if lora:
        return (f"{len(lora)} unmerged LoRA layers (adapters {sorted(module.peft_config)}) would be dropped by the "
                "fused projections; pipe.fuse_lora() first to fuse both")
    module.fuse_qkv_projections()
    _guard_fused_lora(module)
    return None


def _unfuse_if_lora(module: torch.nn.Module, _args: Any) -> None:
    """Forward pre-hook on a q/k/v-fused module: a LoRA loaded after fusing (any path, e.g. the
    user's own ``pipe.load_lora_weights``) would be ignored by the fused projections, so the
    fusion is undone before the first forward that would drop it.  Cheap: it looks further only
    when the module's set of adapters changed."""
    adapters = tuple(sorted(getattr(module, "peft_config", None) or ()))
    if adapters == getattr(module, "_facegen_fused_adapters", ()):
        return
    module._facegen_fused_adapters = adapters
    if unmerged_lora_layers(module) and "FusedAttnProcessor2_0" in _processor_classes(module):
        module.unfuse_qkv_projections()
        logger.warning("LoRA adapters %s loaded after q/k/v fusion: projections unfused so the LoRA acts",
                       list(adapters))


def _guard_fused_lora(module: torch.nn.Module) -> None:
    if getattr(module, "_facegen_lora_guard", None) is None:
        module._facegen_fused_adapters = tuple(sorted(getattr(module, "peft_config", None) or ()))
        module._facegen_lora_guard = module.register_forward_pre_hook(_unfuse_if_lora)


def _wants_vae_fp32(pipe: Any, cfg: FastPathConfig, dtype: torch.dtype) -> bool:
    if cfg.vae_fp32_decode is not None:
        return cfg.vae_fp32_decode and dtype != torch.float32
    vae = getattr(pipe, "vae", None)
    return (dtype == torch.float16 and hasattr(pipe, "upcast_vae")
            and bool(getattr(getattr(vae, "config", None), "force_upcast", False)))


def _ensure_fp32(vae: torch.nn.Module) -> None:
    # some pipelines (SDXL img2img) convert the VAE back to fp16 after their own upcast
    if next(vae.parameters()).dtype != torch.float32:
        vae.to(torch.float32)


def _fp32_decode(self: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    _ensure_fp32(self)
    return type(self).decode(self, z.to(torch.float32), *args, **kwargs)


def _fp32_encode(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    _ensure_fp32(self)
    out = type(self).encode(self, x.to(torch.float32), *args, **kwargs)
    dist = out[0] if isinstance(out, tuple) else out.latent_dist
    if x.dtype != torch.float32 and isinstance(dist, DiagonalGaussianDistribution):
        cast = DiagonalGaussianDistribution(dist.parameters.to(x.dtype), deterministic=dist.deterministic)
        if isinstance(out, tuple):
            return (cast, *out[1:])
        out.latent_dist = cast
    return out


def _keep_vae_fp32(vae: torch.nn.Module) -> None:
    """Keep ``vae`` in fp32 for good: latents are cast to it on the way in, ``encode`` returns
    its distribution in the caller's dtype.  Idempotent; bound methods, so a deep copy of the
    VAE calls its own weights."""
    vae.to(torch.float32)
    vae.decode = types.MethodType(_fp32_decode, vae)
    vae.encode = types.MethodType(_fp32_encode, vae)


def optimize_pipeline(pipe: Any, cfg: FastPathConfig | None = None) -> Any:
    """Apply the exact engine options of ``cfg`` (default: :meth:`FastPathConfig.default_for`
    the pipeline's device) to a diffusers SD/SDXL(/ControlNet) pipeline, in place; return it.

    Call it once, after loading adapters (IP-Adapter processors are detected and left alone) and
    before the first generation.  With ``compile`` the first call per batch size is slow
    (compilation + graph capture); later calls and later processes (persistent cache) are fast.
    """
    device = pipeline_device(pipe)
    cfg = cfg or FastPathConfig.default_for(device)
    previous = applied_options(pipe)
    if previous is not None and previous.config == cfg:
        return pipe
    unet = getattr(pipe, "unet", None)
    if not isinstance(unet, torch.nn.Module):          # a DiT pipeline (FLUX): its transformer sets the dtype
        unet = getattr(pipe, "transformer", None)
    current = unet.dtype if isinstance(unet, torch.nn.Module) else torch.float32
    dtype = cfg.resolved_dtype(device, current)
    rec = AppliedFastPath(config=cfg, device=str(device), dtype=str(dtype).removeprefix("torch."))

    vae = getattr(pipe, "vae", None)
    vae_fp32 = isinstance(vae, torch.nn.Module) and _wants_vae_fp32(pipe, cfg, dtype)
    for name, m in _modules(pipe, (*DENOISER_NAMES, "vae", "text_encoder", "text_encoder_2", "image_encoder")):
        if name == "vae" and vae_fp32:
            continue
        if next(m.parameters(), torch.empty(0, dtype=dtype)).dtype != dtype:
            m.to(dtype)
            rec.applied.append(f"{name}->{rec.dtype}")
    if vae_fp32:
        _keep_vae_fp32(vae)
        rec.applied.append("vae fp32 decode")

    convnets = _modules(pipe, (*DENOISER_NAMES, "vae"))
    if cfg.sdpa:
        for name, m in convnets:
            if _use_sdpa(m):
                rec.applied.append(f"{name} sdpa")
    if cfg.fuse_qkv:
        for name, m in convnets:
            why = _fuse_qkv(m)
            if why is None:
                rec.applied.append(f"{name} fused qkv")
            else:
                rec.skipped[f"{name} fused qkv"] = why
        if any(a.startswith("unet fused") for a in rec.applied):
            pipe.fusing_unet = True       # so pipe.unfuse_qkv_projections() works as in diffusers
        if any(a.startswith("vae fused") for a in rec.applied):
            pipe.fusing_vae = True
    if cfg.channels_last:
        for name, m in convnets:
            m.to(memory_format=torch.channels_last)
            rec.applied.append(f"{name} channels_last")

    if device.type == "cuda" and cfg.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
        rec.applied.append("cudnn.benchmark")

    if cfg.compile:
        if device.type != "cuda" and not cfg.compile_on_cpu:
            rec.skipped["compile"] = f"device {device.type} (set compile_on_cpu=True to compile there)"
        else:
            apply_compile(pipe, cfg, device, rec)

    setattr(pipe, _APPLIED_ATTR, rec)
    logger.info("fast path on %s (%s): %s%s", device, rec.dtype, ", ".join(rec.applied) or "nothing",
                "".join(f"; skipped {k}: {v}" for k, v in rec.skipped.items()))
    return pipe


def applied_options(pipe: Any) -> AppliedFastPath | None:
    """What :func:`optimize_pipeline` applied to ``pipe`` (None if it never ran)."""
    return getattr(pipe, _APPLIED_ATTR, None)


def clone_pipeline(pipe: Any) -> Any:
    """A copy of ``pipe`` with its own copy of every component (same weights, fresh scheduler
    state), e.g. to optimise one side of a comparison without touching the other."""
    comps = {k: copy.deepcopy(v) if v is not None else None for k, v in pipe.components.items()}
    from facegen.models.loading import pipeline_kwargs

    clone = type(pipe)(**comps, **pipeline_kwargs(type(pipe)))
    if hasattr(pipe, "_progress_bar_config"):
        clone.set_progress_bar_config(**pipe._progress_bar_config)
    return clone


# ----------------------------------------------------------------------------- batching helpers


def make_generators(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per image.  With CPU generators (default) the initial noise, hence the image,
    is the same on every device and for every batch composition."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``output_type='pt'`` images in [0, 1], ``(N, 3, H, W)`` on any device → RGB uint8
    ``(N, H, W, 3)`` numpy, by the same arithmetic as diffusers' PIL output (float32 x 255,
    round half to even), on the device, with one transfer of uint8 instead of float32."""
    if images.ndim != 4:
        raise InvalidArgumentError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
    u8 = images.float().mul(255.0).round().to(torch.uint8)
    return u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
