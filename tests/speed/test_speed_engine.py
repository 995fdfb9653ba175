"""The fast path's engine (facegen.speed.engine) keeps the pixels of the plain diffusers pipeline
(tiny seeded components)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from facegen.errors import InvalidArgumentError
from facegen.speed.config import FastPathConfig
from facegen.speed.engine import applied_options, clone_pipeline, optimize_pipeline
from facegen.speed.torch_compile import set_compile_cache

pytest.importorskip("diffusers")

from _speed_helpers import embeds, psnr, run, tiny_pipeline  # noqa: E402 - tests/ helper module


@pytest.fixture(scope="module")
def reference():
    return tiny_pipeline()


# ----------------------------------------------------------------------------- exactness


def test_optimized_pipeline_keeps_the_reference_pixels(reference):
    fast = optimize_pipeline(clone_pipeline(reference), FastPathConfig.default_for("cpu"))
    ref_img = run(reference, [3, 4])
    fast_img = run(fast, [3, 4])
    assert ref_img.std() > 10, "tiny pipeline makes flat images: the comparison would prove nothing"
    assert np.abs(ref_img.astype(int) - fast_img).max() <= 2
    assert psnr(ref_img, fast_img) >= 40
    applied = applied_options(fast).applied
    assert "unet fused qkv" in applied and "unet channels_last" in applied and "vae fused qkv" in applied
    # the options really act on the copy, and the reference is untouched
    assert any(hasattr(m, "to_qkv") for m in fast.unet.modules())
    assert not any(hasattr(m, "to_qkv") for m in reference.unet.modules())
    assert fast.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert reference.unet.conv_in.weight.is_contiguous()


def test_batch_with_per_image_generators_equals_single_runs(reference):
    fast = optimize_pipeline(clone_pipeline(reference))
    pos, neg = embeds(3, seed=5)
    batch = run(fast, [10, 11, 12], pos, neg)
    singles = np.concatenate([run(fast, [10 + i], pos[i:i + 1], neg[i:i + 1]) for i in range(3)])
    assert np.abs(batch.astype(int) - singles).max() <= 1
    assert not np.array_equal(batch[0], batch[1])          # different seeds/identities → different images


def test_speed_imports_no_pipeline():
    """speed/ sits below pipelines/: importing it must not load a pipeline module."""
    import subprocess

    code = ("import sys, facegen.speed.engine, facegen.speed.presets, facegen.speed.torch_compile; "
            "print(sorted(m for m in sys.modules if m.startswith('facegen.pipelines')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_uint8_on_device_is_diffusers_pil_arithmetic(reference):
    assert np.array_equal(run(reference, [7], output_type="pt"), run(reference, [7], output_type="pil"))


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
    pipe = tiny_pipeline()
    optimize_pipeline(pipe, FastPathConfig(dtype="bf16", vae_fp32_decode=True, channels_last=False))
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    img = run(pipe, [0])
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
    a, b = run(reference, [0, 1]), run(fast, [0, 1], output_type="pt")
    assert np.abs(a.astype(int) - b).max() <= 2 and psnr(a, b) >= 40
    assert any((tmp_path / "cache" / "torchinductor").iterdir())


# ----------------------------------------------------------------------------- GPU (run by a GPU owner)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_default_fast_path_keeps_fp16_pixels():
    ref = tiny_pipeline(torch.float16, "cuda")
    fast = optimize_pipeline(clone_pipeline(ref), FastPathConfig.default_for("cuda"))
    a = run(ref, [0, 1])
    for _ in range(2):                                 # compile, then CUDA-graph capture
        run(fast, [0, 1], output_type="pt")
    b = run(fast, [0, 1], output_type="pt")
    assert psnr(a, b) >= 40 and np.percentile(np.abs(a.astype(int) - b), 99.9) <= 8
