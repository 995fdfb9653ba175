"""Time facegen's fast generation path against the plain diffusers pipeline, same pixels.

Builds the full-size Stable Diffusion 1.5 architecture (``--sdxl``: SDXL, as used by InstantID /
IP-Adapter-FaceID-SDXL) from the public configs written below, with seeded random weights (no
download), and times in one process, side by side, at identical settings and seeds:

  (a) reference: a plain ``StableDiffusionPipeline`` called as Arc2Face's README calls it:
      the ID vectors projected through the text encoder ("photo of a id person", the ``id``
      token's embedding replaced), then ``pipeline(prompt_embeds=...)`` with the negative prompt
      encoded by the pipeline on every call and PIL output.  SDXL: ``prompt_embeds`` and pooled
      embeddings given directly;
  (b) facegen: the same components copied, ``optimize_pipeline`` applied, then — for SD1.5 —
      exactly what ``facegen dataset`` runs: ``IDGenerationPipeline.generate_many`` through the
      Arc2Face adapter (ID projection, negative encoded once, one identity per sample in one
      call, uint8 conversion on the device).  SDXL and the pixel-changing presets use the engine
      path alone (the pipeline called with the cached negative conditioning).

After warm-up it takes the median of several runs at batch 1 and batch B, checks that (b)'s
images match (a)'s within the stated tolerance (exit 1 when they don't: the speed may not come
from computing something else), and prints images/s, latency, the ratio (b)/(a), achieved
TFLOP/s (model FLOPs counted with FlopCounterMode) against a matmul peak measured in the same
process, and peak memory.

    python benchmarks/bench_generation.py                    # SD1.5, 512², 25 steps, CUDA if present
    python benchmarks/bench_generation.py --sdxl             # SDXL, 1024², 30 steps
    python benchmarks/bench_generation.py --small --json out.json   # tiny arch on CPU, < 1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import functools
import json
import logging
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):                     # `python benchmarks/bench_generation.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facegen.adapters.arc2face import project_face_embs
from facegen.errors import FacegenError
from facegen.id.embedding import IDEmbedding
from facegen.models.registry import Preset, get_preset
from facegen.pipelines.fastpath import (
    FAST_PRESETS,
    ConditioningCache,
    FastPathConfig,
    applied_options,
    apply_preset,
    clone_pipeline,
    images_to_uint8,
    make_generators,
    optimize_pipeline,
)
from facegen.pipelines.generation import IDGenerationPipeline

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


def _weights_bytes(pipe: Any) -> int:
    total = 0
    for v in pipe.components.values():
        if isinstance(v, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*v.parameters(), *v.buffers()))
    return total


@dataclass
class Conditioning:
    """Per-image identities.  SD1.5: Arc2Face ID vectors (``ids``), projected by each path inside
    its timed call; SDXL: prompt and pooled embeddings computed once (InstantID-like shapes)."""

    prompt_embeds: torch.Tensor | None = None       # SDXL (N, 77, D)
    pooled: torch.Tensor | None = None              # SDXL (N, P)
    ids: list[IDEmbedding] | None = None            # SD1.5: unit ID vectors, one per image

    def swapped(self) -> Conditioning:
        """Images 0 and 1 with each other's identity (the equality check's control)."""
        if self.ids is not None:
            return Conditioning(ids=[self.ids[1], self.ids[0], *self.ids[2:]])
        assert self.prompt_embeds is not None and self.pooled is not None
        order = [1, 0, *range(2, self.prompt_embeds.shape[0])]
        return Conditioning(self.prompt_embeds[order], self.pooled[order])


def arc2face_preset(pipe: Any) -> Preset:
    """The ``arc2face`` preset with the ID width this architecture's text encoder takes
    (512 = released; the ``--small`` text encoder is narrower)."""
    hidden = int(pipe.text_encoder.config.hidden_size)
    return dataclasses.replace(get_preset("arc2face"), id_dim=min(512, hidden))


def identity_conditioning(pipe: Any, arch: Arch, n: int, seed: int) -> Conditioning:
    """``n`` distinct identities.  SD: random unit ArcFace-like vectors for Arc2Face's ID token;
    SDXL: unit-scale random embeddings."""
    g = torch.Generator().manual_seed(seed + 7)
    device, dtype = pipe.unet.device, pipe.unet.dtype
    if arch.xl:
        d = pipe.unet.config.cross_attention_dim
        return Conditioning(torch.randn(n, 77, d, generator=g).to(device, dtype),
                            torch.randn(n, arch.pooled_dim, generator=g).to(device, dtype))
    preset = arc2face_preset(pipe)
    return Conditioning(ids=[IDEmbedding(v.numpy(), preset.encoder) for v in unit_vectors(n, preset.id_dim, seed + 7)])


def unit_vectors(n: int, dim: int, seed: int) -> torch.Tensor:
    """``n`` seeded random unit vectors (ArcFace-like identities), on the CPU."""
    vecs = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return vecs / vecs.norm(dim=1, keepdim=True)


def project_ids(pipe: Any, ids: list[IDEmbedding]) -> torch.Tensor:
    """Arc2Face's ``project_face_embs``: ID vectors → ``prompt_embeds`` (N, 77, hidden)."""
    param = next(pipe.text_encoder.parameters())
    vecs = torch.from_numpy(np.stack([e.vector for e in ids])).to(device=param.device, dtype=param.dtype)
    return project_face_embs(pipe.text_encoder, pipe.tokenizer, vecs)


# ----------------------------------------------------------------------------- the two paths


@dataclass
class Settings:
    size: int
    steps: int
    guidance: float
    seed: int


def run_reference(pipe: Any, cond: Conditioning, n: int, s: Settings) -> np.ndarray:
    """(a) the plain pipeline as Arc2Face / InstantID's README call it (PIL output)."""
    if cond.ids is not None:
        with torch.no_grad():
            kw: dict[str, Any] = {"prompt_embeds": project_ids(pipe, cond.ids[:n])}
    else:
        kw = {"prompt_embeds": cond.prompt_embeds[:n], "pooled_prompt_embeds": cond.pooled[:n]}
    out = pipe(**kw, num_inference_steps=s.steps, guidance_scale=s.guidance, height=s.size, width=s.size,
               generator=make_generators(range(s.seed, s.seed + n)), output_type="pil")
    return np.stack([np.asarray(im) for im in out.images])


class FacegenRunner:
    """(b) for SD1.5: ``facegen dataset``'s own call, ``IDGenerationPipeline.generate_many``
    through the Arc2Face adapter on the optimised pipeline."""

    label = "IDGenerationPipeline.generate_many (Arc2Face adapter), as facegen dataset runs it"

    def __init__(self, pipe: Any, device: torch.device, dtype: torch.dtype) -> None:
        from facegen.adapters.arc2face import Arc2FaceAdapter

        preset = arc2face_preset(pipe)
        self.pipe = IDGenerationPipeline(preset, Arc2FaceAdapter(preset), pipe, device=device, dtype=dtype)

    def __call__(self, cond: Conditioning, n: int, s: Settings) -> np.ndarray:
        assert cond.ids is not None
        with torch.inference_mode():
            images = self.pipe.generate_many(cond.ids[:n], list(range(s.seed, s.seed + n)),
                                             num_inference_steps=s.steps, guidance_scale=s.guidance,
                                             height=s.size, width=s.size)
        return np.stack(images)


class FastRunner:
    """(b) engine path: optimised pipeline, negative conditioning cached once, uint8 on device;
    ``overrides``: a fast preset's call arguments (a pixel-changing preset, to measure its cost)."""

    label = "the optimised pipeline called with cached negative conditioning"

    def __init__(self, pipe: Any, overrides: dict[str, Any] | None = None) -> None:
        self.pipe = pipe
        self.cache = ConditioningCache()
        self.overrides = overrides or {}

    def _negative(self, cond: Conditioning) -> dict[str, torch.Tensor]:
        pipe = self.pipe
        if cond.pooled is not None:            # SDXL force_zeros_for_empty_prompt: zeros, as the reference
            neg = self.cache.get("uncond-xl", lambda: torch.zeros_like(cond.prompt_embeds[:1]))
            pooled = self.cache.get("uncond-xl-pooled", lambda: torch.zeros_like(cond.pooled[:1]))
            return {"negative_prompt_embeds": neg, "negative_pooled_prompt_embeds": pooled}
        neg = self.cache.get("uncond", lambda: pipe.encode_prompt("", pipe.unet.device, 1, False)[0])
        return {"negative_prompt_embeds": neg}

    def __call__(self, cond: Conditioning, n: int, s: Settings) -> np.ndarray:
        with torch.inference_mode():
            if cond.ids is not None:
                kw: dict[str, Any] = {"prompt_embeds": project_ids(self.pipe, cond.ids[:n])}
            else:
                kw = {"prompt_embeds": cond.prompt_embeds[:n], "pooled_prompt_embeds": cond.pooled[:n]}
            kw |= {k: v.expand(n, *v.shape[1:]) for k, v in self._negative(cond).items()}
            call = {"num_inference_steps": s.steps, "guidance_scale": s.guidance} | self.overrides
            out = self.pipe(**kw, **call, height=s.size, width=s.size,
                            generator=make_generators(range(s.seed, s.seed + n)), output_type="pt")
            return images_to_uint8(out.images)


# ----------------------------------------------------------------------------- measurements


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class RunStats:
    times: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    host_syncs: int | None = None
    images: np.ndarray | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed(fn: Callable[[], np.ndarray], device: torch.device, stats: RunStats) -> None:
    _sync(device)
    t0 = time.perf_counter()
    images = fn()
    _sync(device)
    stats.times.append(time.perf_counter() - t0)
    stats.images = images


def peak_memory(fn: Callable[[], np.ndarray], device: torch.device, own_weights: int, graph_pools: bool) -> int:
    """One untimed call's peak GPU memory for one path, though both pipelines are resident:
    its transient peak (reserved memory over the resident set, after emptying the cache) + its
    own weights + (``graph_pools``) the CUDA-graph private pools it holds between calls, which
    replays reuse without allocating (reserved but not allocated after emptying the cache)."""
    if device.type != "cuda":
        return 0
    _sync(device)
    torch.cuda.empty_cache()
    resident = torch.cuda.memory_reserved(device)
    pools = max(0, resident - torch.cuda.memory_allocated(device)) if graph_pools else 0
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_reserved(device) - resident + own_weights + pools


def count_host_syncs(fn: Callable[[], np.ndarray], device: torch.device) -> int | None:
    """Host-device synchronisations during one untimed call, counted with CUDA's sync debug mode
    (each synchronising op warns once).  None on CPU, or where the mode is unavailable."""
    if device.type != "cuda":
        return None
    import warnings

    try:
        torch.cuda.set_sync_debug_mode("warn")
    except (RuntimeError, AttributeError) as e:            # pragma: no cover - depends on the build
        logger.info("sync debug mode unavailable: %s", e)
        return None
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in seen)


def count_flops(pipe: Any, arch: Arch, size: int) -> dict[str, float]:
    """Model FLOPs per image: one UNet call on one latent, and one VAE decode, counted with
    FlopCounterMode on meta tensors (no compute) with the math attention kernel (so attention
    matmuls are counted on every device)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    lat = size // pipe.vae_scale_factor
    with torch.device("meta"):
        unet = type(pipe.unet).from_config(pipe.unet.config)
        vae = type(pipe.vae).from_config(pipe.vae.config)
        x = torch.empty(1, unet.config.in_channels, lat, lat)
        ctx = torch.empty(1, 77, unet.config.cross_attention_dim)
        t = torch.tensor([500])
        kw: dict[str, Any] = {}
        if arch.xl:
            kw["added_cond_kwargs"] = {"text_embeds": torch.empty(1, arch.pooled_dim), "time_ids": torch.empty(1, 6)}
        z = torch.empty(1, vae.config.latent_channels, lat, lat)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            with FlopCounterMode(display=False) as fc:
                unet(x, t, ctx, **kw)
            unet_flops = fc.get_total_flops()
            with FlopCounterMode(display=False) as fc:
                vae.decode(z)
            vae_flops = fc.get_total_flops()
    return {"unet_call": float(unet_flops), "vae_decode": float(vae_flops)}


def image_flops(flops: dict[str, float], steps: int, guidance: float, cfg_cutoff: float | None = None) -> float:
    """Model FLOPs of one image: UNet passes (two per step with guidance, one after an early-CFG
    cut-off, which falls after step ``int(steps * cutoff)``) plus one VAE decode."""
    if guidance <= 1:
        passes = steps
    elif cfg_cutoff is None:
        passes = 2 * steps
    else:
        c = min(int(steps * cfg_cutoff), steps - 1)
        passes = 2 * (c + 1) + (steps - c - 1)
    return passes * flops["unet_call"] + flops["vae_decode"]


def _random_tiny_vae(seed: int) -> torch.nn.Module:
    """TAESD's architecture (diffusers' AutoencoderTiny defaults) with random weights."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed + 3)
    return AutoencoderTiny()


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, small: bool) -> float:
    """Best of a few square matmuls in the run's dtype: the practical peak of this device."""
    n = 8192 if device.type == "cuda" else (1024 if small else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    iters = 20 if device.type == "cuda" else 3
    for _ in range(2):
        a @ b
    best = math.inf
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / iters)
    return 2 * n**3 / best / 1e12


def compare(ref: np.ndarray, ours: np.ndarray) -> dict[str, float]:
    """uint8 image batches → max / p99.9 / mean |diff| (levels) and the worst image's PSNR (dB)."""
    if ref.shape != ours.shape:
        raise ValueError(f"image batches differ in shape: {ref.shape} vs {ours.shape}")
    d = np.abs(ref.astype(np.int16) - ours.astype(np.int16))
    mse = (d.astype(np.float64) ** 2).reshape(len(d), -1).mean(axis=1)
    psnr = [math.inf if m == 0 else 10 * math.log10(255.0**2 / m) for m in mse]
    return {"max_abs": int(d.max()), "p999_abs": float(np.percentile(d, 99.9)), "mean_abs": float(d.mean()),
            "min_psnr_db": float(min(psnr))}


@dataclass(frozen=True)
class Tolerance:
    min_psnr_db: float
    max_p999: float
    max_abs: int

    def ok(self, c: dict[str, float]) -> bool:
        return c["min_psnr_db"] >= self.min_psnr_db and c["p999_abs"] <= self.max_p999 and c["max_abs"] <= self.max_abs


# ----------------------------------------------------------------------------- main


def _fmt_psnr(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}"


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sdxl", action="store_true", help="SDXL architecture (1024², 30 steps, guidance 5)")
    p.add_argument("--small", action="store_true", help="a few-M-parameter architecture, 128², 8 steps, batch 2 (CPU, CI)")
    p.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="both paths' dtype (auto: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="the large batch (default 32 SD1.5, 8 SDXL, 2 small)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per path and batch (median; default 5, small 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3 with compile, else 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's; --small on CPU: 1, which keeps the "
                        "small run robust on a loaded CI machine)")
    p.add_argument("--no-compile", action="store_true", help="facegen path without torch.compile")
    p.add_argument("--no-cuda-graphs", action="store_true", help="compile without CUDA graphs")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead / default)")
    p.add_argument("--inductor-tuning", action="store_true", help="diffusers' inductor flags (longer compile)")
    p.add_argument("--no-fuse-qkv", action="store_true")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--preset", default="exact", choices=sorted(FAST_PRESETS),
                   help="facegen's fast preset; a pixel-changing one (exact=False) is timed and its pixel "
                        "difference shown, and the equality check then fails by design")
    p.add_argument("--min-psnr", type=float, default=40.0, help="equality: worst image PSNR, dB (default 40)")
    p.add_argument("--max-p999", type=float, default=8.0, help="equality: 99.9th percentile |diff|, levels (default 8)")
    p.add_argument("--max-abs", type=int, default=64, help="equality: max |diff| anywhere, levels (default 64)")
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if not args.verbose:                 # library chatter (safety-checker notice, dtype casts) off
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
    arch = ARCHS[("small-xl" if args.sdxl else "small") if args.small else ("sdxl" if args.sdxl else "sd15")]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = args.threads or (1 if args.small and device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    fast_cfg = FastPathConfig.default_for(device).replace(
        dtype=args.dtype, fuse_qkv=not args.no_fuse_qkv, channels_last=not args.no_channels_last,
        inductor_tuning=args.inductor_tuning)
    if args.no_compile:
        fast_cfg = fast_cfg.replace(compile=False)
    if args.no_cuda_graphs:
        fast_cfg = fast_cfg.replace(cuda_graphs=False)
    if args.compile_mode:
        fast_cfg = fast_cfg.replace(compile_mode=args.compile_mode)
    dtype = fast_cfg.resolved_dtype(device, torch.float32)
    compiled = fast_cfg.compile and (device.type == "cuda" or fast_cfg.compile_on_cpu)
    s = Settings(size=args.size or arch.size, steps=args.steps or arch.steps,
                 guidance=arch.guidance if args.guidance is None else args.guidance, seed=args.seed)
    batch = args.batch or arch.batch
    repeats = args.repeats or (3 if args.small else 5)
    warmup = args.warmup if args.warmup is not None else (3 if compiled else 1)
    tol = Tolerance(args.min_psnr, args.max_p999, args.max_abs)
    if device.type == "cpu" and not args.small:
        logger.warning("full-size %s on CPU: expect minutes per image; --small is the CPU mode", arch.name)

    preset = FAST_PRESETS[args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        ref = build_pipeline(arch, args.seed, device, dtype, Path(tmp))
        fast_pipe = clone_pipeline(ref)
        if preset.name == "exact":
            overrides: dict[str, Any] = {}
            optimize_pipeline(fast_pipe, fast_cfg)
        else:
            try:
                overrides = apply_preset(fast_pipe, preset, engine=fast_cfg, tiny_vae=_random_tiny_vae(args.seed) if preset.tiny_vae else None)
            except FacegenError as e:
                print(f"error: preset {preset.name!r} cannot run on random weights: {e}", file=sys.stderr)
                return 2
        fast_pipe.set_progress_bar_config(disable=True)
        cond = identity_conditioning(ref, arch, max(batch, 2), args.seed)
    fast: FacegenRunner | FastRunner = (FacegenRunner(fast_pipe, device, dtype)
                                        if not arch.xl and preset.name == "exact" else FastRunner(fast_pipe, overrides))
    w_ref, w_fast = _weights_bytes(ref), _weights_bytes(fast_pipe)

    flops = count_flops(ref, arch, s.size)
    flops_image = image_flops(flops, s.steps, s.guidance)
    flops_fast = image_flops(count_flops(fast_pipe, arch, s.size) if preset.tiny_vae else flops,
                             overrides.get("num_inference_steps", s.steps), overrides.get("guidance_scale", s.guidance),
                             preset.cfg_cutoff_ratio)
    passes = 2 if s.guidance > 1 else 1
    peak = matmul_peak_tflops(device, dtype, args.small)
    floor = peak * 1e12 / flops_image

    paths: dict[str, Callable[[int], np.ndarray]] = {
        "reference": lambda n: run_reference(ref, cond, n, s),
        "facegen": lambda n: fast(cond, n, s),
    }
    weights = {"reference": w_ref, "facegen": w_fast}
    model_flops = {"reference": flops_image, "facegen": flops_fast}
    stats: dict[str, dict[int, RunStats]] = {k: {} for k in paths}
    batches = [1] if batch == 1 else [1, batch]
    for n in batches:
        for name, fn in paths.items():
            t0 = time.perf_counter()
            for _ in range(warmup):
                fn(n)
            logger.info("warm-up %s batch %d: %.1f s", name, n, time.perf_counter() - t0)
            stats[name][n] = RunStats()
        for r in range(repeats):                       # interleaved: drift hits both paths alike
            for name, fn in paths.items():
                timed(functools.partial(fn, n), device, stats[name][n])
                logger.info("%s batch %d run %d: %.3f s", name, n, r, stats[name][n].times[-1])
        for name, fn in paths.items():
            stats[name][n].peak_bytes = peak_memory(functools.partial(fn, n), device, weights[name], name == "facegen")
            stats[name][n].host_syncs = count_host_syncs(functools.partial(fn, n), device)

    eq = {f"batch_{n}": compare(stats["reference"][n].images, stats["facegen"][n].images) for n in batches}
    ref_std = float(stats["reference"][batches[-1]].images.std())
    degenerate = ref_std < 5.0          # flat images would make any equality check meaningless
    # control: the check must see the conditioning — the same seeds with the identities swapped
    control = compare(run_reference(ref, cond, 2, s), run_reference(ref, cond.swapped(), 2, s))
    blind = tol.ok(control)
    passed = all(tol.ok(c) for c in eq.values()) and not degenerate and not blind
    self_ref = compare(stats["reference"][1].images, stats["reference"][batches[-1]].images[:1]) if len(batches) > 1 else None

    # ------------------------------------------------------------------ table (stdout: the product)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    dname = str(dtype).removeprefix("torch.")
    print(f"facegen generation benchmark: {arch.name} architecture, random weights; {s.size}x{s.size}, "
          f"DPM-Solver++ {s.steps} steps, guidance {s.guidance:g}, {dname}, {device.type} ({dev_name}), "
          f"torch {torch.__version__}, {_versions()}")
    print(f"FLOPs/image: UNet {flops['unet_call'] / 1e9:.4g} GFLOP/call x {passes} x {s.steps} + VAE decode "
          f"{flops['vae_decode'] / 1e12:.4g} TFLOP = {flops_image / 1e12:.4g} TFLOP; matmul peak ({dname}) "
          f"{peak:.2f} TFLOP/s -> floor {floor:.2f} img/s")
    applied = applied_options(fast_pipe)
    if flops_fast != flops_image:
        print(f"facegen preset {preset.name!r}: {flops_fast / 1e12:.4g} TFLOP/image")
    print(f"facegen path: {fast.label}")
    print(f"facegen engine options (preset {preset.name!r}): "
          f"{', '.join(a for a in applied.applied if not a.startswith('compile cache')) or 'nothing'}")
    mem_label = "peak GiB" if device.type == "cuda" else "peak RSS"
    print(f"{'path':<10} {'batch':>5} {'s/batch':>9} {'img/s':>8} {'TFLOP/s':>8} {'%peak':>6} {mem_label:>9}")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20       # KiB on Linux
    for n in batches:
        for name in paths:
            st = stats[name][n]
            ips = n / st.median
            tf = ips * model_flops[name] / 1e12
            mem = st.peak_bytes / 2**30 if device.type == "cuda" else rss_gib
            rows.setdefault(name, {})[str(n)] = {"seconds_per_batch": st.median, "images_per_s": ips,
                                                 "tflops": tf, "fraction_of_peak": tf / peak,
                                                 "peak_mem_gib": mem, "host_syncs": st.host_syncs,
                                                 "times": st.times}
            mem_s = f"{mem:9.2f}" if device.type == "cuda" else f"{mem:8.2f}*"
            print(f"{name:<10} {n:>5} {st.median:9.3f} {ips:8.2f} {tf:8.2f} {100 * tf / peak:5.1f}% {mem_s}")
    if device.type != "cuda":
        print("* process peak RSS (GiB), both paths together: CPU has no per-call peak")
    syncs = {(name, n): stats[name][n].host_syncs for n in batches for name in paths}
    if any(v is not None for v in syncs.values()):
        print("host syncs per call (CUDA sync debug mode): " + ", ".join(
            f"{name} batch {n}: {v}" for (name, n), v in syncs.items()))
    speed = {f"batch_{n}": rows["facegen"][str(n)]["images_per_s"] / rows["reference"][str(n)]["images_per_s"]
             for n in batches}
    print("facegen / reference: " + ", ".join(
        f"batch {n} x{speed[f'batch_{n}']:.2f}" + (" (latency "
        f"{rows['reference']['1']['seconds_per_batch']:.3f} -> {rows['facegen']['1']['seconds_per_batch']:.3f} s)" if n == 1 else "")
        for n in batches))
    tol_s = f"PSNR >= {tol.min_psnr_db:g} dB, p99.9 |diff| <= {tol.max_p999:g}, max |diff| <= {tol.max_abs}"
    for key, c in eq.items():
        print(f"equality {key.replace('_', ' ')}: worst PSNR {_fmt_psnr(c['min_psnr_db'])} dB, max |diff| "
              f"{c['max_abs']}, p99.9 {c['p999_abs']:.1f}, mean {c['mean_abs']:.3f} -> {'ok' if tol.ok(c) else 'MISMATCH'}")
    if self_ref is not None:
        print(f"(reference vs itself, batch 1 vs image 0 of batch {batch}: PSNR {_fmt_psnr(self_ref['min_psnr_db'])} dB, "
              f"max |diff| {self_ref['max_abs']}: the dtype's own batch noise)")
    print(f"control: the same seeds with two identities swapped differ by PSNR {_fmt_psnr(control['min_psnr_db'])} dB, "
          f"max |diff| {control['max_abs']} -> the check {'CANNOT' if blind else 'can'} see the conditioning")
    if degenerate:
        print(f"reference images are flat (std {ref_std:.1f} levels): the comparison proves nothing -> FAIL")
    print(f"equality check ({tol_s}): {'PASS' if passed else 'FAIL'}")
    if not preset.exact:
        print(f"preset {preset.name!r} changes the pixels by design ({preset.description}); its ID-similarity "
              "cost must be measured with real weights and reported next to its speed-up")
    if arch.xl is False and not args.small and device.type == "cuda" and s.size == 512:
        b = rows["facegen"].get(str(batch), rows["facegen"]["1"])
        print(f"issue-7 targets (H100): batch img/s {b['images_per_s']:.2f} (>= 11), latency "
              f"{rows['facegen']['1']['seconds_per_batch']:.3f} s (<= 0.35)")

    if args.json:
        result = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "arch": arch.name, "small": args.small, "device": device.type, "device_name": dev_name,
            "dtype": dname, "torch": torch.__version__, "versions": _versions(),
            "size": s.size, "steps": s.steps, "guidance": s.guidance, "batch": batch, "repeats": repeats,
            "warmup": warmup, "seed": s.seed, "cpu_threads": torch.get_num_threads(), "fast_config": dataclasses.asdict(fast_cfg),
            "fast_applied": applied.applied, "fast_skipped": applied.skipped,
            "preset": preset.name, "preset_exact": preset.exact,
            "flops": {**flops, "per_image": flops_image, "per_image_facegen": flops_fast}, "reference_image_std": ref_std, "control_swapped_identities": control, "matmul_peak_tflops": peak, "floor_images_per_s": floor,
            "runs": rows, "speedup": speed, "equality": {**eq, "tolerance": dataclasses.asdict(tol), "passed": passed},
            "reference_self": self_ref, "peak_rss_gib": rss_gib,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_json_safe(result), indent=2))
    return 0 if passed else 1


def _versions() -> str:
    import diffusers
    import transformers

    return f"diffusers {diffusers.__version__}, transformers {transformers.__version__}"


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
