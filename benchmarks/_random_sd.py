"""Seeded random-weight Stable Diffusion 1.5 / SDXL pipelines built from the public configs
written below (no download), with the UNet calibrated so the images depend on the conditioning:
what ``bench_generation.py`` times.  ``ARCHS``: the full-size architectures and the few-M-parameter
``small`` ones of the same block types (a 2-core CPU runs them in seconds)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import _common  # noqa: F401 - puts the checkout on sys.path
from facegen.adapters.arc2face import project_face_embs

logger = logging.getLogger("bench_generation")

# ----------------------------------------------------------------------------- public configs (no download)

SD15_UNET: dict[str, Any] = {           # stable-diffusion-v1-5/unet/config.json (= Arc2Face's UNet)
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 768, "attention_head_dim": 8,
}
SD15_VAE: dict[str, Any] = {            # stable-diffusion-v1-5/vae/config.json
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2, "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 32,
    "sample_size": 512, "scaling_factor": 0.18215,
}
SD15_TEXT: dict[str, Any] = {           # stable-diffusion-v1-5/text_encoder/config.json (CLIP ViT-L/14 text)
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5, "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
SD_SCHEDULER: dict[str, Any] = {        # stable-diffusion-v1-5/scheduler (and SDXL base): the noise schedule
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "steps_offset": 1, "prediction_type": "epsilon", "algorithm_type": "dpmsolver++", "solver_order": 2,
}
SDXL_UNET: dict[str, Any] = {           # stable-diffusion-xl-base-1.0/unet/config.json (InstantID, FaceID-SDXL)
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280], "layers_per_block": 2, "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20], "cross_attention_dim": 2048, "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
}
SDXL_VAE: dict[str, Any] = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}

# --small: same block types, a few M parameters, runs on a 2-core CPU in seconds
SMALL_UNET: dict[str, Any] = {
    **SD15_UNET, "sample_size": 16, "block_out_channels": [32, 64, 64, 64], "layers_per_block": 1,
    "norm_num_groups": 16, "cross_attention_dim": 64, "attention_head_dim": 8,
}
SMALL_VAE: dict[str, Any] = {
    **SD15_VAE, "block_out_channels": [16, 32, 32, 32], "layers_per_block": 1, "norm_num_groups": 8, "sample_size": 128,
}
SMALL_TEXT: dict[str, Any] = {
    **SD15_TEXT, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "projection_dim": 64,
}
SMALL_XL_UNET: dict[str, Any] = {
    **SDXL_UNET, "sample_size": 16, "block_out_channels": [32, 64, 64], "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1, 2], "attention_head_dim": [2, 4, 4], "cross_attention_dim": 64,
    "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 32 + 6 * 8, "norm_num_groups": 16,
}
SMALL_XL_VAE: dict[str, Any] = {**SMALL_VAE, "scaling_factor": 0.13025, "force_upcast": True}


@dataclass(frozen=True)
class Arch:
    name: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text: dict[str, Any] | None       # SD-style: CLIP text encoder + tokenizer in the pipeline
    size: int
    steps: int
    guidance: float
    batch: int
    xl: bool = False
    pooled_dim: int = 0               # SDXL pooled text embedding width


ARCHS: dict[str, Arch] = {
    "sd15": Arch("SD1.5 (Arc2Face)", SD15_UNET, SD15_VAE, SD15_TEXT, 512, 25, 3.0, 32),
    "sdxl": Arch("SDXL (InstantID / FaceID-SDXL)", SDXL_UNET, SDXL_VAE, None, 1024, 30, 5.0, 8, xl=True, pooled_dim=1280),
    "small": Arch("small SD1.5-like", SMALL_UNET, SMALL_VAE, SMALL_TEXT, 128, 8, 3.0, 2),
    "small-xl": Arch("small SDXL-like", SMALL_XL_UNET, SMALL_XL_VAE, None, 128, 8, 5.0, 2, xl=True, pooled_dim=32),
}

# ----------------------------------------------------------------------------- components


def _tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer with the real special-token ids (49406/49407) and a byte-level vocabulary,
    written to ``folder``: enough to encode the empty negative prompt and Arc2Face's "photo of a id
    person" (with ``id`` one token, the one whose embedding the ID vector replaces)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"id</w>": 512, "<|startoftext|>": 49406, "<|endoftext|>": 49407}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\ni d</w>\n")    # "id": one token, as Arc2Face needs
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return CLIPTokenizer.from_pretrained(folder)


#: |eps(cond) - eps(other cond)| / |eps| the random UNet is calibrated to: default init gives
#: ~0.07, too weak for the images to depend on the identity (a conditioning bug would go unseen)
COND_STRENGTH = 0.3


def _calibrate_unet(unet: torch.nn.Module, arch: Arch, seed: int,
                    contexts: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Make the random UNet behave like a trained epsilon-model where it matters to the check:
    cross-attention outputs scaled so that two identities' conditionings (``contexts``: two
    (1, 77, D) tensors; default random ones) move the prediction by COND_STRENGTH, then
    ``conv_out`` scaled so the prediction has unit std.  Returns the two scales."""
    from diffusers.models.attention_processor import Attention

    g = torch.Generator().manual_seed(seed + 99)
    dev = unet.device

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device="cpu").to(dev)

    x = randn(1, unet.config.in_channels, 16, 16)
    ctx = ([c.to(dev) for c in contexts] if contexts is not None
           else [randn(1, 77, unet.config.cross_attention_dim) for _ in range(2)])
    kw: dict[str, Any] = {}
    if arch.xl:
        kw["added_cond_kwargs"] = {"text_embeds": randn(1, arch.pooled_dim),
                                   "time_ids": torch.tensor([[arch.size, arch.size, 0, 0, arch.size, arch.size]],
                                                            dtype=torch.float32, device=dev)}
    cross = [m.to_out[0] for m in unet.modules() if isinstance(m, Attention) and m.is_cross_attention]

    def predict() -> tuple[torch.Tensor, float]:
        a, b = (unet(x, 500, c, **kw).sample for c in ctx)
        return a, float((a - b).std() / a.std())

    attn_scale = 1.0
    with torch.no_grad():
        for _ in range(2):                         # the response is close to linear: two steps suffice
            _, strength = predict()
            k = min(max(COND_STRENGTH / max(strength, 1e-6), 0.125), 64.0)
            for lin in cross:
                lin.weight.mul_(k)
                if lin.bias is not None:
                    lin.bias.mul_(k)
            attn_scale *= k
        pred, strength = predict()
        out_scale = 1.0 / max(float(pred.std()), 1e-6)
        unet.conv_out.weight.mul_(out_scale)
        unet.conv_out.bias.mul_(out_scale)
    return {"cross_attention_scale": attn_scale, "conv_out_scale": out_scale, "cond_strength": strength}


def build_pipeline(arch: Arch, seed: int, device: torch.device, dtype: torch.dtype, workdir: Path) -> Any:
    """The plain diffusers pipeline for ``arch`` with seeded random weights (default init, which
    keeps activations finite; the UNet calibrated by :func:`_calibrate_unet`)."""
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    contexts = text = tokenizer = None
    if not arch.xl:
        from transformers import CLIPTextConfig, CLIPTextModel

        with torch.device(device):
            torch.manual_seed(seed + 2)
            text = CLIPTextModel(CLIPTextConfig(**arch.text)).eval()
        tokenizer = _tokenizer(workdir)
        # calibrate on what the UNet will see: two identities through Arc2Face's ID-token projection
        vecs = unit_vectors(2, min(512, int(arch.text["hidden_size"])), seed + 98).to(device)
        contexts = list(project_face_embs(text, tokenizer, vecs).split(1))
    with torch.device(device):                    # initialise on the device: seconds, not minutes, for SDXL
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**arch.unet)
        calib = _calibrate_unet(unet, arch, seed, contexts)
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**arch.vae)
    scheduler = DPMSolverMultistepScheduler(**SD_SCHEDULER)
    logger.info("built %s: UNet %.1f M params (%s), VAE %.1f M", arch.name, _n_params(unet) / 1e6,
                ", ".join(f"{k} {v:.3g}" for k, v in calib.items()), _n_params(vae) / 1e6)
    if arch.xl:
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                         tokenizer_2=None, unet=unet, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=True, add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def weights_bytes(pipe: Any) -> int:
    """Bytes of ``pipe``'s weights and buffers (every nn.Module component)."""
    total = 0
    for v in pipe.components.values():
        if isinstance(v, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*v.parameters(), *v.buffers()))
    return total


def unit_vectors(n: int, dim: int, seed: int) -> torch.Tensor:
    """``n`` seeded random unit vectors (ArcFace-like identities), on the CPU."""
    vecs = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return vecs / vecs.norm(dim=1, keepdim=True)
