"""The fast generation path keeps the pixels of the plain diffusers pipeline (tiny seeded components)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegen.errors import InvalidArgumentError
from facegen.pipelines.fastpath import (
    FAST_PRESETS,
    ConditioningCache,
    FastPathConfig,
    applied_options,
    apply_preset,
    clone_pipeline,
    expand_for_batch,
    get_preset,
    images_to_uint8,
    make_generators,
    optimize_pipeline,
    set_compile_cache,
)

pytest.importorskip("diffusers")

CROSS = 32
STEPS = 6


def _tiny_pipeline(dtype: torch.dtype = torch.float32, device: str = "cpu"):
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


@pytest.fixture(scope="module")
def reference():
    return _tiny_pipeline()


def _embeds(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 77, CROSS, generator=g), torch.randn(1, 77, CROSS, generator=g).expand(n, -1, -1)


def _run(pipe, seeds, pos=None, neg=None, output_type="np", **kw):
    n = len(seeds)
    if pos is None:
        pos, neg = _embeds(n)
    dev = pipe.unet.device
    out = pipe(prompt_embeds=pos.to(dev, pipe.unet.dtype), negative_prompt_embeds=neg.to(dev, pipe.unet.dtype),
               num_inference_steps=STEPS, guidance_scale=3.0, height=64, width=64,
               generator=make_generators(seeds), output_type=output_type, **kw)
    if output_type == "pt":
        return images_to_uint8(out.images)
    if output_type == "pil":
        return np.stack([np.asarray(im) for im in out.images])
    return (out.images * 255).round().astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


# ----------------------------------------------------------------------------- exactness


def test_optimized_pipeline_keeps_the_reference_pixels(reference):
    fast = optimize_pipeline(clone_pipeline(reference), FastPathConfig.default_for("cpu"))
    ref_img = _run(reference, [3, 4])
    fast_img = _run(fast, [3, 4])
    assert ref_img.std() > 10, "tiny pipeline makes flat images: the comparison would prove nothing"
    assert np.abs(ref_img.astype(int) - fast_img).max() <= 2
    assert _psnr(ref_img, fast_img) >= 40
    applied = applied_options(fast).applied
    assert "unet fused qkv" in applied and "unet channels_last" in applied and "vae fused qkv" in applied
    # the options really act on the copy, and the reference is untouched
    assert any(hasattr(m, "to_qkv") for m in fast.unet.modules())
    assert not any(hasattr(m, "to_qkv") for m in reference.unet.modules())
    assert fast.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert reference.unet.conv_in.weight.is_contiguous()


def test_batch_with_per_image_generators_equals_single_runs(reference):
    fast = optimize_pipeline(clone_pipeline(reference))
    pos, neg = _embeds(3, seed=5)
    batch = _run(fast, [10, 11, 12], pos, neg)
    singles = np.concatenate([_run(fast, [10 + i], pos[i:i + 1], neg[i:i + 1]) for i in range(3)])
    assert np.abs(batch.astype(int) - singles).max() <= 1
    assert not np.array_equal(batch[0], batch[1])          # different seeds/identities → different images


def test_expand_for_batch_matches_num_images_per_prompt(reference):
    pos, neg = _embeds(2, seed=9)
    via_diffusers = _run(reference, [1, 2, 3, 4], pos, neg[:2], num_images_per_prompt=2)
    via_expand = _run(reference, [1, 2, 3, 4], expand_for_batch(pos, 2), expand_for_batch(neg[:2], 2))
    assert np.abs(via_diffusers.astype(int) - via_expand).max() <= 1
    with pytest.raises(InvalidArgumentError):
        expand_for_batch(pos, 0)


def test_uint8_on_device_is_diffusers_pil_arithmetic(reference):
    assert np.array_equal(_run(reference, [7], output_type="pt"), _run(reference, [7], output_type="pil"))


def test_custom_attention_processors_are_not_fused_away(reference):
    from diffusers.models.attention_processor import AttnProcessor2_0

    class IPLikeProcessor(AttnProcessor2_0):     # stands for IP-Adapter's processors
        pass

    pipe = clone_pipeline(reference)
    pipe.unet.set_attn_processor(IPLikeProcessor())
    optimize_pipeline(pipe, FastPathConfig())
    rec = applied_options(pipe)
    assert "unet fused qkv" not in rec.applied and "IPLikeProcessor" in rec.skipped["unet fused qkv"]
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {IPLikeProcessor}
    assert "vae fused qkv" in rec.applied                 # the VAE's stock attention still fused


def test_legacy_attention_becomes_sdpa(reference):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe = clone_pipeline(reference)
    pipe.unet.set_attn_processor(AttnProcessor())
    optimize_pipeline(pipe, FastPathConfig(fuse_qkv=False))
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor2_0}
    assert "unet sdpa" in applied_options(pipe).applied


def test_vae_fp32_decode_with_a_half_unet():
    pipe = _tiny_pipeline()
    optimize_pipeline(pipe, FastPathConfig(dtype="bf16", vae_fp32_decode=True, channels_last=False))
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    img = _run(pipe, [0])
    assert img.shape == (1, 64, 64, 3) and img.std() > 10
    x = torch.zeros(1, 3, 64, 64, dtype=torch.bfloat16)
    assert pipe.vae.encode(x).latent_dist.mean.dtype == torch.bfloat16     # back in the caller's dtype
    copy = clone_pipeline(pipe)                                             # the copy decodes with its own VAE
    with torch.no_grad():
        copy.vae.post_quant_conv.weight.zero_()
        copy.vae.post_quant_conv.bias.zero_()
        z = torch.randn(1, 4, 32, 32, dtype=torch.bfloat16)
        assert not torch.equal(copy.vae.decode(z).sample, pipe.vae.decode(z).sample)


def test_default_config_is_exact_and_device_aware():
    cpu, cuda = FastPathConfig.default_for("cpu"), FastPathConfig.default_for("cuda")
    assert not cpu.compile and cpu.resolved_dtype(torch.device("cpu"), torch.float16) == torch.float32
    assert cuda.compile and cuda.cuda_graphs and cuda.resolved_compile_mode() == "reduce-overhead"
    assert cuda.resolved_dtype(torch.device("cuda"), torch.float32) == torch.float16
    assert cuda.resolved_dtype(torch.device("cuda"), torch.bfloat16) == torch.bfloat16
    with pytest.raises(InvalidArgumentError):
        FastPathConfig(dtype="fp8")


def test_compile_is_skipped_on_cpu_unless_asked(reference, tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())   # torch sets its default on import
    monkeypatch.setenv("FACEGEN_HOME", str(tmp_path))
    pipe = optimize_pipeline(clone_pipeline(reference), FastPathConfig(compile=True))
    assert "compile" in applied_options(pipe).skipped
    assert getattr(pipe.unet, "_compiled_call_impl", None) is None
    assert set_compile_cache() == str(tmp_path / "cache" / "torchinductor")
    assert (tmp_path / "cache" / "torchinductor").is_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))   # a user's own choice is kept
    assert set_compile_cache() == str(tmp_path / "mine")


@pytest.mark.slow
def test_compiled_path_keeps_pixels_and_uses_the_facegen_cache(reference, tmp_path, monkeypatch):
    """The torch.compile path (what CUDA gets by default) on CPU: needs a C++ compiler, ~1 min."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    monkeypatch.setenv("FACEGEN_HOME", str(tmp_path))
    fast = optimize_pipeline(clone_pipeline(reference), FastPathConfig(compile=True, compile_on_cpu=True))
    assert "unet compile(default)" in applied_options(fast).applied
    a, b = _run(reference, [0, 1]), _run(fast, [0, 1], output_type="pt")
    assert np.abs(a.astype(int) - b).max() <= 2 and _psnr(a, b) >= 40
    assert any((tmp_path / "cache" / "torchinductor").iterdir())


# ----------------------------------------------------------------------------- presets


def test_presets_that_change_pixels_are_flagged():
    assert FAST_PRESETS["exact"].exact
    for name in ("lcm-4step", "early-cfg", "tiny-vae"):
        assert not FAST_PRESETS[name].exact, name
    with pytest.raises(InvalidArgumentError):
        get_preset("turbo")


def test_early_cfg_cuts_the_unconditional_half_of_any_batch(reference):
    exact = clone_pipeline(reference)
    optimize_pipeline(exact)
    early = clone_pipeline(reference)
    kwargs = apply_preset(early, "early-cfg")
    seen: list[int] = []
    early.unet.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    a, b = _run(exact, [0, 1]), _run(early, [0, 1], **kwargs)
    cut = int(STEPS * FAST_PRESETS["early-cfg"].cfg_cutoff_ratio)
    assert seen == [4] * (cut + 1) + [2] * (STEPS - cut - 1)   # batch 2: CFG doubles to 4, then 2
    assert not np.array_equal(a, b)                              # not exact: flagged so


def test_presets_needing_weights_say_so(reference):
    with pytest.raises(InvalidArgumentError, match="LCM-LoRA"):
        apply_preset(clone_pipeline(reference), "lcm-4step")
    with pytest.raises(InvalidArgumentError, match="AutoencoderTiny"):
        apply_preset(clone_pipeline(reference), "tiny-vae")


def test_tiny_vae_preset_swaps_the_decoder(reference):
    from diffusers import AutoencoderTiny

    pipe = clone_pipeline(reference)
    torch.manual_seed(0)
    with pytest.raises(InvalidArgumentError, match="upsamples x8"):      # TAESD's x8 on a x2 pipeline
        apply_preset(pipe, "tiny-vae", tiny_vae=AutoencoderTiny())
    tiny = AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1))
    apply_preset(pipe, "tiny-vae", tiny_vae=tiny)
    assert pipe.vae is tiny
    assert _run(pipe, [0]).shape == (1, 64, 64, 3)


# ----------------------------------------------------------------------------- conditioning cache


def test_conditioning_cache_computes_once_per_identity():
    cache = ConditioningCache(max_items=2)
    calls: list[str] = []
    emb = torch.randn(512)

    def compute(tag: str):
        return lambda: calls.append(tag) or tag

    k = ConditioningCache.key_of(emb, "arc2face")
    assert cache.get(k, compute("a")) == "a"
    assert cache.get(ConditioningCache.key_of(emb.clone(), "arc2face"), compute("again")) == "a"
    assert calls == ["a"] and cache.hits == 1 and cache.misses == 1
    assert ConditioningCache.key_of(emb) != ConditioningCache.key_of(emb + 1e-3)
    assert ConditioningCache.key_of(emb) != ConditioningCache.key_of(emb.half())
    assert ConditioningCache.key_of(torch.ones(3, dtype=torch.bfloat16)) == ConditioningCache.key_of(torch.ones(3, dtype=torch.bfloat16))
    cache.get("b", compute("b"))
    cache.get("c", compute("c"))                     # evicts the least recently used (k)
    assert k not in cache and len(cache) == 2
    with pytest.raises(InvalidArgumentError):
        ConditioningCache(max_items=0)


# ----------------------------------------------------------------------------- GPU (run by a GPU owner)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_default_fast_path_keeps_fp16_pixels():
    ref = _tiny_pipeline(torch.float16, "cuda")
    fast = optimize_pipeline(clone_pipeline(ref), FastPathConfig.default_for("cuda"))
    a = _run(ref, [0, 1])
    for _ in range(2):                                 # compile, then CUDA-graph capture
        _run(fast, [0, 1], output_type="pt")
    b = _run(fast, [0, 1], output_type="pt")
    assert _psnr(a, b) >= 40 and np.percentile(np.abs(a.astype(int) - b), 99.9) <= 8
