"""Named speed presets: the engine's exact options, or pixel-changing shortcuts flagged so.

``exact`` applies the engine options alone (:func:`facegen.speed.engine.optimize_pipeline`).
The others change the pixels (few-step LCM, guidance on the early steps only, the tiny VAE
decoder), each flagged ``exact=False``: never a default, and whoever uses one must report its
ID-similarity cost next to the speed-up (the dataset runner and the benchmark print both).

    kwargs = apply_preset(pipe, "early-cfg")      # sets the pipeline up, returns __call__ overrides
    images = pipe(..., **kwargs).images
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from facegen.errors import InvalidArgumentError
from facegen.speed.config import FastPathConfig
from facegen.speed.engine import optimize_pipeline, pipeline_device

logger = logging.getLogger(__name__)


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
    model via ``pipe.load_lora_weights(..., adapter_name='lcm')``; ``'tiny-vae'``: an ``AutoencoderTiny`` (TAESD/TAESDXL)).
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


def get_fast_preset(name: str | FastPreset) -> FastPreset:
    """The fast preset called ``name`` (a :class:`FastPreset` is returned as it is)."""
    if isinstance(name, FastPreset):
        return name
    try:
        return FAST_PRESETS[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown fast preset {name!r}; choose one of {', '.join(FAST_PRESETS)}") from None


def _has_lcm_lora(pipe: Any) -> bool:
    """Whether an LCM-LoRA is loaded: a LoRA adapter whose name says ``lcm`` (as the arc2face-lcm
    preset and diffusers' LCM-LoRA guide name it).  Any other LoRA — FaceID's own ``faceid_0``,
    a style LoRA — is not one: LCM's 4 steps at guidance 1 without it ruin the images."""
    unet = getattr(pipe, "unet", None)
    return any("lcm" in str(name).lower() for name in (getattr(unet, "peft_config", None) or {}))


def apply_preset(pipe: Any, preset: str | FastPreset, *, tiny_vae: torch.nn.Module | None = None,
                 engine: FastPathConfig | None = None) -> dict[str, Any]:
    """Set ``pipe`` up for ``preset`` (engine options — ``engine`` or the preset's own or
    :meth:`FastPathConfig.default_for` — plus its scheduler or VAE swap) and return the
    ``__call__`` keyword overrides it needs (steps, guidance, step-end callback).  Non-exact
    presets log a warning: their ID-similarity cost must be reported."""
    p = get_fast_preset(preset)
    if not p.exact:
        logger.warning("fast preset %r changes the pixels (%s); report its ID-similarity cost", p.name, p.description)
    kwargs: dict[str, Any] = {}
    if p.scheduler == "lcm":
        if not _has_lcm_lora(pipe):
            raise InvalidArgumentError(
                f"preset {p.name!r} needs the LCM-LoRA of the base model loaded first "
                "(pipe.load_lora_weights(<lcm-lora-sdv1-5 or lcm-lora-sdxl>, adapter_name='lcm'))")
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
        tiny_vae.to(device=pipeline_device(pipe), dtype=next(ref.parameters()).dtype if ref is not None else torch.float32)
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
