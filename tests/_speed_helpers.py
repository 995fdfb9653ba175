"""A tiny seeded Stable Diffusion pipeline and a run helper, shared by the fast-path tests
(tests/speed/test_speed_engine.py, tests/speed/test_speed_presets.py)."""

from __future__ import annotations

import math

import numpy as np
import torch

from facegen.speed.engine import images_to_uint8, make_generators

CROSS = 32
STEPS = 6


def tiny_pipeline(dtype: torch.dtype = torch.float32, device: str = "cpu"):
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS, norm_num_groups=32, attention_head_dim=8)
    with torch.no_grad():              # unit-scale noise prediction, as a trained model's
        unet.conv_out.weight.mul_(3.0)
        unet.conv_out.bias.mul_(3.0)
    torch.manual_seed(1)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=32)
    sched = DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def embeds(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 77, CROSS, generator=g), torch.randn(1, 77, CROSS, generator=g).expand(n, -1, -1)


def run(pipe, seeds, pos=None, neg=None, output_type="np", **kw):
    n = len(seeds)
    if pos is None:
        pos, neg = embeds(n)
    dev = pipe.unet.device
    out = pipe(prompt_embeds=pos.to(dev, pipe.unet.dtype), negative_prompt_embeds=neg.to(dev, pipe.unet.dtype),
               num_inference_steps=STEPS, guidance_scale=3.0, height=64, width=64,
               generator=make_generators(seeds), output_type=output_type, **kw)
    if output_type == "pt":
        return images_to_uint8(out.images)
    if output_type == "pil":
        return np.stack([np.asarray(im) for im in out.images])
    return (out.images * 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
