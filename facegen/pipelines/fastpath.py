"""The fast generation path: engine options that keep the pixels, and named presets that don't.

``optimize_pipeline(pipe, cfg)`` applies *exact* engine options to any diffusers Stable
Diffusion / SDXL pipeline (with or without ControlNet or IP-Adapter): the same images as the
plain pipeline at the same dtype, within the tolerance the benchmark states
(``benchmarks/bench_generation.py``), only faster.  The options:

* dtype: ``'auto'`` keeps a half-precision pipeline as it is on CUDA (fp16 otherwise), fp32 on CPU;
* fp32 VAE decode where the pipeline would upcast anyway (SDXL's VAE overflows in fp16): the VAE
  stays in fp32 instead of being converted back and forth on every call;
* SDPA attention (flash / memory-efficient kernels on CUDA), fused QKV projections,
  channels-last convolutions;
* ``torch.compile`` of the UNet/ControlNet/VAE decoder (CUDA by default, CPU on request), with
  static shapes, CUDA graphs (``mode='reduce-overhead'``) and a persistent compile cache under
  ``facegen.paths.cache_dir()/torchinductor``.

Options that change the pixels (few-step LCM, guidance on the early steps only, the tiny VAE
decoder) live in :data:`FAST_PRESETS`, each flagged ``exact=False``.  They are never a default,
and whoever uses one must report its ID-similarity cost next to the speed-up (the dataset
runner and the benchmark print both).

Conditioning is computed once per identity and reused (:class:`ConditioningCache`); guidance is
batched by diffusers itself (one UNet call on ``[uncond, cond]``); a batch is made with one
``torch.Generator`` per image (:func:`make_generators`), so image *i* of a batch has the pixels
of a single run with the same seed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from facegen.adapters.cache import ConditioningCache  # noqa: F401 - re-exported (it moved beside the adapters)
from facegen.errors import InvalidArgumentError
from facegen.paths import cache_dir

logger = logging.getLogger(__name__)


_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: the pipeline components the engine options act on (each one, when present and an nn.Module)
DENOISER_NAMES: tuple[str, ...] = ("unet", "controlnet")
_APPLIED_ATTR = "_facegen_fastpath"


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class FastPathConfig:
    """Engine options for :func:`optimize_pipeline`.  All of them keep the pixels (``exact``).

    dtype: ``'auto'`` | ``'fp32'`` | ``'fp16'`` | ``'bf16'``.  ``'auto'``: on CUDA the pipeline's
        own half dtype (fp16 when it is in fp32); fp32 on CPU.
    vae_fp32_decode: keep the VAE in fp32 and cast latents to it.  ``None`` (auto): only where
        the pipeline itself would upcast (an SDXL-style pipeline whose VAE has ``force_upcast``),
        so the pixels stay those of the plain pipeline.  ``True`` on an SD1.5 fp16 pipeline is
        *more* accurate than the reference, not identical to it.
    sdpa: replace legacy ``AttnProcessor`` by ``AttnProcessor2_0`` (scaled_dot_product_attention).
    fuse_qkv: fuse the q/k/v projections (kept off modules whose processors are not the stock
        ones, e.g. IP-Adapter's, which would otherwise be replaced, and off modules carrying
        unmerged LoRA layers, whose LoRA the fused projections would drop; a LoRA loaded after
        fusing unfuses the module before its next forward). The fast path never changes what a
        loaded LoRA does.
    channels_last: NHWC memory format for the conv nets.
    compile: ``torch.compile`` the denoisers (and the VAE decoder with ``compile_vae``).
        Only on CUDA unless ``compile_on_cpu`` (needs a C++ compiler; slow to start).
    compile_mode: ``None``: ``'reduce-overhead'`` with ``cuda_graphs`` else ``'default'``.
    cuda_graphs: capture CUDA graphs (static shapes; one graph per batch size).
    cudnn_benchmark: let cuDNN pick the fastest conv algorithm per shape (process-wide flag).
    inductor_tuning: the inductor flags diffusers recommends for UNets (1x1 conv as matmul,
        coordinate-descent tuning, no epilogue fusion; process-wide); CUDA only, longer compile.
    compile_cache_dir: persistent inductor/triton cache; ``None``: ``cache_dir()/torchinductor``
        unless ``TORCHINDUCTOR_CACHE_DIR`` is already set.
    """

    dtype: str = "auto"
    vae_fp32_decode: bool | None = None
    sdpa: bool = True
    fuse_qkv: bool = True
    channels_last: bool = True
    compile: bool = False
    compile_mode: str | None = None
    compile_vae: bool = True
    compile_on_cpu: bool = False
    cuda_graphs: bool = False
    cudnn_benchmark: bool = False
    inductor_tuning: bool = False
    compile_cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in _DTYPES:
            raise InvalidArgumentError(f"dtype {self.dtype!r} is not one of 'auto', {', '.join(map(repr, _DTYPES))}")

    @classmethod
    def default_for(cls, device: str | torch.device, interactive: bool = False) -> FastPathConfig:
        """The exact options worth having on ``device``.  CUDA: compile + CUDA graphs + cuDNN
        autotuning — unless ``interactive`` (a few images per process, e.g. one ``facegen
        generate``), where minutes of compilation would cost more than they save.  CPU: the eager
        options only (compiling needs a C++ toolchain and minutes of start-up)."""
        dev = torch.device(device)
        if dev.type == "cuda":
            return cls(compile=not interactive, cuda_graphs=not interactive, cudnn_benchmark=True)
        return cls()

    def replace(self, **changes: Any) -> FastPathConfig:
        return dataclasses.replace(self, **changes)

    def resolved_dtype(self, device: torch.device, current: torch.dtype) -> torch.dtype:
        if self.dtype != "auto":
            return _DTYPES[self.dtype]
        if device.type == "cuda":
            return current if current in (torch.float16, torch.bfloat16) else torch.float16
        return torch.float32

    def resolved_compile_mode(self) -> str:
        if self.compile_mode:
            return self.compile_mode
        return "reduce-overhead" if self.cuda_graphs else "default"


@dataclass
class AppliedFastPath:
    """What :func:`optimize_pipeline` did to a pipeline (kept on it; see :func:`applied_options`)."""

    config: FastPathConfig
    device: str
    dtype: str
    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- optimize


def _pipeline_device(pipe: Any) -> torch.device:
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
            active = sub.active_adapters if isinstance(sub.active_adapters, list) else [sub.active_adapters]
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


def _torch_default_cache_dir() -> str | None:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # pragma: no cover - older torch
        return None
    return os.path.abspath(default_cache_dir())


def set_compile_cache(directory: str | os.PathLike[str] | None = None) -> str:
    """Point inductor's (and triton's) persistent cache at ``directory`` (default
    ``cache_dir()/torchinductor``) unless ``TORCHINDUCTOR_CACHE_DIR`` is set already; returns it.
    The second process to compile the same model loads kernels instead of re-tuning them."""
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if env and directory is None and os.path.abspath(env) != _torch_default_cache_dir():
        return env                                 # the user's choice (torch writes its default there too)
    path = os.fspath(directory) if directory is not None else os.fspath(cache_dir() / "torchinductor")
    os.makedirs(path, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
    except ImportError:  # pragma: no cover - torch without inductor
        pass
    return path


def _without_cuda_graphs(mode: str) -> str:
    return {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}.get(mode, mode)


def _compile(module: torch.nn.Module, mode: str) -> None:
    # in place: keeps the class (diffusers checks isinstance / reads .config on pipeline modules)
    module.compile(fullgraph=False, dynamic=False, mode=mode)


def optimize_pipeline(pipe: Any, cfg: FastPathConfig | None = None) -> Any:
    """Apply the exact engine options of ``cfg`` (default: :meth:`FastPathConfig.default_for`
    the pipeline's device) to a diffusers SD/SDXL(/ControlNet) pipeline, in place; return it.

    Call it once, after loading adapters (IP-Adapter processors are detected and left alone) and
    before the first generation.  With ``compile`` the first call per batch size is slow
    (compilation + graph capture); later calls and later processes (persistent cache) are fast.
    """
    device = _pipeline_device(pipe)
    cfg = cfg or FastPathConfig.default_for(device)
    previous = applied_options(pipe)
    if previous is not None and previous.config == cfg:
        return pipe
    unet = getattr(pipe, "unet", None)
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
            _apply_compile(pipe, cfg, device, rec)

    setattr(pipe, _APPLIED_ATTR, rec)
    logger.info("fast path on %s (%s): %s%s", device, rec.dtype, ", ".join(rec.applied) or "nothing",
                "".join(f"; skipped {k}: {v}" for k, v in rec.skipped.items()))
    return pipe


def _apply_compile(pipe: Any, cfg: FastPathConfig, device: torch.device, rec: AppliedFastPath) -> None:
    cache = set_compile_cache(cfg.compile_cache_dir)
    mode = cfg.resolved_compile_mode()
    if device.type != "cuda":
        mode = _without_cuda_graphs(mode)          # CUDA graphs exist on CUDA only
    if device.type == "cuda" and cfg.inductor_tuning:
        import torch._inductor.config as inductor_config

        inductor_config.conv_1x1_as_mm = True
        inductor_config.coordinate_descent_tuning = True
        inductor_config.epilogue_fusion = False
        inductor_config.coordinate_descent_check_all_directions = True
    _raise_recompile_limit(16)
    targets = _modules(pipe, DENOISER_NAMES)
    vae = getattr(pipe, "vae", None)
    if cfg.compile_vae and isinstance(getattr(vae, "decoder", None), torch.nn.Module):
        # no CUDA graphs for the decoder: it runs once per batch, so there is no launch overhead to save
        targets.append(("vae.decoder", vae.decoder))
    for name, m in targets:
        if getattr(m, "_compiled_call_impl", None) is not None:
            rec.skipped[f"{name} compile"] = "already compiled"
            continue
        m_mode = _without_cuda_graphs(mode) if name == "vae.decoder" else mode
        _compile(m, m_mode)
        rec.applied.append(f"{name} compile({m_mode})")
    rec.applied.append(f"compile cache {cache}")


def _raise_recompile_limit(at_least: int) -> None:
    """Room for one graph per static batch shape (dataset batches are padded to a few sizes;
    dynamo's default limit of 8 per function would otherwise send later shapes to eager mode)."""
    try:
        import torch._dynamo.config as dynamo_config
    except ImportError:  # pragma: no cover - torch without dynamo
        return
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(int(getattr(dynamo_config, name)), at_least))
            return


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


def expand_for_batch(embeds: torch.Tensor, n: int) -> torch.Tensor:
    """``(K, ...)`` per-identity embeddings → ``(K*n, ...)``, identity-major, the order diffusers
    uses for ``num_images_per_prompt`` (so the batch equals K calls of n images)."""
    if n < 1:
        raise InvalidArgumentError(f"images per identity must be >= 1, got {n}")
    return embeds.repeat_interleave(n, dim=0) if n > 1 else embeds


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``output_type='pt'`` images in [0, 1], ``(N, 3, H, W)`` on any device → RGB uint8
    ``(N, H, W, 3)`` numpy, by the same arithmetic as diffusers' PIL output (float32 x 255,
    round half to even), on the device, with one transfer of uint8 instead of float32."""
    if images.ndim != 4:
        raise InvalidArgumentError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
    u8 = images.float().mul(255.0).round().to(torch.uint8)
    return u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()


# ----------------------------------------------------------------------------- conditioning cache



# ----------------------------------------------------------------------------- presets (pixel-changing ones flagged)


class EarlyCFGCutoff:
    """``callback_on_step_end`` that drops classifier-free guidance after a fraction of the steps
    (the unconditional half of the batch is cut; later steps cost one UNet pass instead of two).

    Unlike diffusers' ``SDCFGCutoffCallback`` (which keeps row ``-1`` only, i.e. batch 1), it keeps
    the conditional half of any batch.  Changes the pixels.
    """

    def __init__(self, cutoff_step_ratio: float, tensor_inputs: Sequence[str]) -> None:
        if not 0.0 <= cutoff_step_ratio <= 1.0:
            raise InvalidArgumentError(f"cutoff_step_ratio must be in [0, 1], got {cutoff_step_ratio}")
        self.cutoff_step_ratio = cutoff_step_ratio
        self.tensor_inputs = list(tensor_inputs)

    def __call__(self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if step_index == int(pipeline.num_timesteps * self.cutoff_step_ratio) and pipeline.do_classifier_free_guidance:
            for name in self.tensor_inputs:
                callback_kwargs[name] = callback_kwargs[name].chunk(2)[1]   # [uncond, cond] -> cond
            pipeline._guidance_scale = 0.0
        return callback_kwargs


@dataclass(frozen=True)
class FastPreset:
    """A named speed setting.  ``exact=False`` presets change the pixels: report their
    ID-similarity cost (mean cosine to the source identity, independent encoder) with the speed.

    ``requires`` names weights the caller loads first (``'lcm-lora'``: LCM-LoRA for the base
    model via ``pipe.load_lora_weights``; ``'tiny-vae'``: an ``AutoencoderTiny`` (TAESD/TAESDXL)).
    """

    name: str
    exact: bool
    description: str
    engine: FastPathConfig | None = None          # None: FastPathConfig.default_for(device)
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None                  # 'lcm'
    cfg_cutoff_ratio: float | None = None
    tiny_vae: bool = False
    requires: tuple[str, ...] = ()


FAST_PRESETS: dict[str, FastPreset] = {
    "exact": FastPreset(
        "exact", True, "engine options only (dtype, SDPA, fused QKV, channels-last, compile, CUDA graphs): "
        "the reference pixels within the benchmark's tolerance"),
    "early-cfg": FastPreset(
        "early-cfg", False, "classifier-free guidance on the first 40% of the steps only "
        "(~30% fewer UNet passes); changes pixels", cfg_cutoff_ratio=0.4),
    "lcm-4step": FastPreset(
        "lcm-4step", False, "LCM-LoRA + LCMScheduler, 4 steps, guidance 1 (no CFG pass); "
        "~12x fewer UNet passes than 25 steps with CFG; changes pixels",
        num_inference_steps=4, guidance_scale=1.0, scheduler="lcm", requires=("lcm-lora",)),
    "tiny-vae": FastPreset(
        "tiny-vae", False, "TAESD decoder instead of the KL-VAE (~10x cheaper decode); changes pixels",
        tiny_vae=True, requires=("tiny-vae",)),
}


def get_preset(name: str | FastPreset) -> FastPreset:
    if isinstance(name, FastPreset):
        return name
    try:
        return FAST_PRESETS[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown fast preset {name!r}; choose one of {', '.join(FAST_PRESETS)}") from None


def _has_lora(pipe: Any) -> bool:
    unet = getattr(pipe, "unet", None)
    return bool(getattr(unet, "peft_config", None))


def apply_preset(pipe: Any, preset: str | FastPreset, *, tiny_vae: torch.nn.Module | None = None,
                 engine: FastPathConfig | None = None) -> dict[str, Any]:
    """Set ``pipe`` up for ``preset`` (engine options — ``engine`` or the preset's own or
    :meth:`FastPathConfig.default_for` — plus its scheduler or VAE swap) and return the
    ``__call__`` keyword overrides it needs (steps, guidance, step-end callback).  Non-exact
    presets log a warning: their ID-similarity cost must be reported."""
    p = get_preset(preset)
    if not p.exact:
        logger.warning("fast preset %r changes the pixels (%s); report its ID-similarity cost", p.name, p.description)
    kwargs: dict[str, Any] = {}
    if p.scheduler == "lcm":
        if not _has_lora(pipe):
            raise InvalidArgumentError(
                f"preset {p.name!r} needs the LCM-LoRA of the base model loaded first "
                "(pipe.load_lora_weights(<lcm-lora-sdv1-5 or lcm-lora-sdxl>); pipe.fuse_lora())")
        from diffusers import LCMScheduler

        pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    if p.tiny_vae:
        if tiny_vae is None:
            raise InvalidArgumentError(f"preset {p.name!r} needs tiny_vae= an AutoencoderTiny (TAESD for SD1.5, TAESDXL for SDXL)")
        ref = getattr(pipe, "vae", None)
        blocks = getattr(getattr(tiny_vae, "config", None), "decoder_block_out_channels", None)
        scale = getattr(pipe, "vae_scale_factor", None)
        if blocks is not None and scale is not None and 2 ** (len(blocks) - 1) != scale:
            raise InvalidArgumentError(
                f"tiny_vae upsamples x{2 ** (len(blocks) - 1)} but the pipeline's latents are x{scale} smaller than the image")
        tiny_vae.to(device=_pipeline_device(pipe), dtype=next(ref.parameters()).dtype if ref is not None else torch.float32)
        pipe.vae = tiny_vae
    if p.cfg_cutoff_ratio is not None:
        unet = getattr(pipe, "unet", None)
        if getattr(unet, "encoder_hid_proj", None) is not None:
            raise InvalidArgumentError(
                f"preset {p.name!r} cannot cut guidance on a pipeline with IP-Adapter image embeddings "
                "(they stay batched for CFG); use 'exact' or 'lcm-4step'")
        names = ["prompt_embeds"]
        allowed = set(getattr(pipe, "_callback_tensor_inputs", ()))
        names += [n for n in ("add_text_embeds", "add_time_ids", "image") if n in allowed]
        cb = EarlyCFGCutoff(p.cfg_cutoff_ratio, names)
        kwargs["callback_on_step_end"] = cb
        kwargs["callback_on_step_end_tensor_inputs"] = cb.tensor_inputs
    if p.num_inference_steps is not None:
        kwargs["num_inference_steps"] = p.num_inference_steps
    if p.guidance_scale is not None:
        kwargs["guidance_scale"] = p.guidance_scale
    optimize_pipeline(pipe, engine or p.engine)
    return kwargs
