"""InfiniteYou (FLUX.1-dev + InfuseNet) on its tiny twin: the invariants of the other families,
the conditioning against re-implementations of upstream's functions, strict loading, memory
options and the CLI.

The reference computations are written here from upstream's description
(bytedance/InfiniteYou pipelines/pipeline_infu_flux.py, resampler.py; compat.md 2.7): the
IP-Adapter perceiver Resampler, ``extract_arcface_bgr_embedding`` (norm_crop 112, BGR, /255*2-1,
IR-SE50, normalised output), and InfuseNet fed ``controlnet_prompt_embeds`` with zero text ids.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegen.adapters.base import ConditionRequest, Sample
from facegen.errors import EncoderMismatchError, FacegenError, InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.paths import ModelAccess
from facegen.pipelines.generation import IDGenerationPipeline

TINY = "tiny-infiniteyou"


def emb(seed: int, dim: int = 128, encoder: str = "dlib-resnet-v1") -> IDEmbedding:
    return IDEmbedding(np.random.default_rng(seed).normal(size=dim).astype(np.float32), encoder)


@pytest.fixture(scope="module")
def flux() -> IDGenerationPipeline:
    return IDGenerationPipeline.from_preset(TINY, device="cpu", fast_path=False)


def request(gen: IDGenerationPipeline, **kw) -> ConditionRequest:
    d = gen.preset.defaults
    base = dict(prompt=None, negative_prompt=None, guidance_scale=d.guidance, height=d.height, width=d.width)
    base.update(kw)
    return ConditionRequest(**base)


def pixels(out) -> np.ndarray:
    return np.stack([np.asarray(im) for im in out.images])


# ----------------------------------------------------------------------------- invariants

def make(flux, e: IDEmbedding, seed: int, **kw) -> np.ndarray:
    return pixels(flux(id_embeds=[e], seed=seed, num_inference_steps=1, progress=False, measure_similarity=False,
                       **kw))


def test_same_seed_same_pixels_and_ids_change_the_image(flux):
    a, b, other_id = make(flux, emb(1), 3), make(flux, emb(1), 3), make(flux, emb(2), 3)
    assert a.shape == (1, 64, 48, 3) and np.array_equal(a, b)
    assert np.abs(a.astype(int) - other_id).mean() > 1.0      # InfuseNet carries the identity


def many(flux, ids, seeds, **kw) -> list[np.ndarray]:
    """The dataset's call: one Sample per image, all in one diffusers call."""
    return flux(samples=[Sample.of(e) for e in ids], seeds=seeds, batch_size=len(ids), progress=False,
                measure_similarity=False, output_type="np", **kw).images


def test_batch_equals_single(flux):
    ids, seeds = [emb(5), emb(6)], [11, 12]
    batch = many(flux, ids, seeds, num_inference_steps=1)
    singles = [make(flux, ids[0], 11)[0],                               # the call path
               many(flux, ids[1:], seeds[1:], num_inference_steps=1)[0]]   # the batched path, alone
    for b, s in zip(batch, singles):
        assert np.abs(b.astype(int) - s.astype(int)).max() <= 1       # float rounding of a batched call


def test_infusenet_scale_zero_is_the_plain_flux_pipeline(flux):
    from diffusers import FluxPipeline

    pipe = flux.pipe
    kwargs = flux.adapter.condition(pipe, [Sample.of(emb(9))], request(flux, controlnet_scale=0.0))
    assert kwargs["controlnet_conditioning_scale"] == 0.0
    plain = FluxPipeline(transformer=pipe.transformer, vae=pipe.vae, text_encoder=pipe.text_encoder,
                         tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2,
                         scheduler=pipe.scheduler)
    common = dict(num_inference_steps=1, guidance_scale=3.5, height=64, width=48, output_type="latent")
    ours = pipe(**kwargs, generator=torch.Generator().manual_seed(0), **common).images
    # the ControlNet pipeline samples the control image's VAE posterior first, from the same
    # generator: draw the same numbers before the plain call so both start from one noise
    g = torch.Generator().manual_seed(0)
    torch.randn((1, pipe.vae.config.latent_channels, 32, 24), generator=g)
    base = plain(prompt=kwargs["prompt"], generator=g, **common).images
    torch.testing.assert_close(ours, base, rtol=0, atol=0)     # (at scale 1 the ID test sees InfuseNet act)


def test_wrong_encoder_and_negative_prompt_are_refused(flux):
    with pytest.raises(EncoderMismatchError, match="buffalo_l-w600k-r50"):
        flux.adapter.condition(flux.pipe, [Sample.of(emb(0, 512, "buffalo_l-w600k-r50"))], request(flux))
    with pytest.raises(InvalidArgumentError, match="takes no negative prompt"):
        flux(id_embeds=[emb(0)], negative_prompt="blurry", progress=False)
    from facegen.adapters.registry import adapter_for
    from facegen.models import get_preset

    for name in ("infiniteyou", "infiniteyou-sim"):
        real = adapter_for(get_preset(name))
        assert (real.encoder, real.normalise, real.preset.id_dim) == ("infiniteyou-ir-se50", True, 512)
        with pytest.raises(EncoderMismatchError):
            real.check_embedding(IDEmbedding(np.ones(512, np.float32), "antelopev2-glintr100"))


# ----------------------------------------------------------------------------- conditioning vs upstream

def upstream_resampler(sd: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """IP-Adapter's Resampler forward (InfiniteYou resampler.py), from its description."""
    lat = sd["latents"].repeat(x.shape[0], 1, 1)
    x = F.linear(x, sd["proj_in.weight"], sd["proj_in.bias"])
    dim = lat.shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    for i in range(depth):
        p = f"layers.{i}"
        xn = F.layer_norm(x, (dim,), sd[f"{p}.0.norm1.weight"], sd[f"{p}.0.norm1.bias"])
        ln = F.layer_norm(lat, (dim,), sd[f"{p}.0.norm2.weight"], sd[f"{p}.0.norm2.bias"])
        q = F.linear(ln, sd[f"{p}.0.to_q.weight"])
        k, v = F.linear(torch.cat([xn, ln], dim=-2), sd[f"{p}.0.to_kv.weight"]).chunk(2, dim=-1)
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        s = 1 / math.sqrt(math.sqrt(q.shape[-1]))
        w = torch.softmax((q * s) @ (k * s).transpose(-2, -1), dim=-1)
        lat = F.linear((w @ v).transpose(1, 2).reshape(lat.shape[0], lat.shape[1], -1), sd[f"{p}.0.to_out.weight"]) + lat
        ff = F.layer_norm(lat, (dim,), sd[f"{p}.1.0.weight"], sd[f"{p}.1.0.bias"])
        lat = F.linear(F.gelu(F.linear(ff, sd[f"{p}.1.1.weight"])), sd[f"{p}.1.3.weight"]) + lat
    out = F.linear(lat, sd["proj_out.weight"], sd["proj_out.bias"])
    return F.layer_norm(out, (out.shape[-1],), sd["norm_out.weight"], sd["norm_out.bias"])


def test_projection_is_upstreams_resampler_on_the_unit_vector(flux):
    from facegen.models import get_preset, resolve_preset

    path = resolve_preset(get_preset(TINY)).file("image_proj")
    sd = torch.load(path, weights_only=True)["image_proj"]
    e = emb(7)
    tokens = flux.adapter.id_tokens(flux.pipe, [e])
    x = torch.from_numpy(e.vector / np.linalg.norm(e.vector)).reshape(1, 1, -1)   # id_embed.reshape([1, -1, 512])
    ref = upstream_resampler(sd, x, heads=sd["latents"].shape[-1] // 64)
    assert tokens.shape == (1, 8, flux.pipe.transformer.config.joint_attention_dim)
    torch.testing.assert_close(tokens, ref, rtol=1e-4, atol=1e-5)


def test_infusenet_sees_the_id_tokens_and_the_transformer_the_prompt(flux):
    pipe, ad = flux.pipe, flux.adapter
    kps = np.array([[16, 24], [32, 24], [24, 34], [18, 44], [30, 44]], np.float32)
    ids = [emb(3), emb(4)]
    kwargs = ad.condition(pipe, [Sample.of(ids[0], "a man", kps), Sample.of(ids[1])], request(flux))
    assert kwargs["prompt"] == ["a man", flux.preset.defaults.prompt]
    drawn, black = (np.asarray(im) for im in kwargs["control_image"])
    assert drawn.shape == (64, 48, 3) and drawn.any() and not black.any()       # pose drawn, else black
    assert (kwargs["control_guidance_start"], kwargs["control_guidance_end"]) == (0.0, 1.0)
    seen: dict[str, list] = {"net": [], "dit": []}
    h1 = pipe.controlnet.register_forward_hook(
        lambda m, a, k, o: seen["net"].append({n: k[n].clone() for n in ("encoder_hidden_states", "txt_ids",
                                                                           "guidance")}), with_kwargs=True)
    h2 = pipe.transformer.register_forward_hook(
        lambda m, a, k, o: seen["dit"].append(k["encoder_hidden_states"].shape), with_kwargs=True)
    try:
        pipe(**kwargs, num_inference_steps=1, guidance_scale=3.5, height=64, width=48,
             generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="latent")
    finally:
        h1.remove()
        h2.remove()
    (net,) = seen["net"]
    torch.testing.assert_close(net["encoder_hidden_states"], ad.id_tokens(pipe, ids))
    assert not net["txt_ids"].any() and net["txt_ids"].shape == (8, 3)       # zero text ids for the ID tokens
    assert torch.all(net["guidance"] == 1.0)                                  # controlnet_guidance_scale
    assert seen["dit"][0][0] == 2 and seen["dit"][0][1] == 512                # the T5 prompt, not the ID


def test_reference_layout_is_upstreams_resize_and_pad(flux):
    from facegen.adapters.infiniteyou import resize_and_pad_layout

    # upstream: a 400x300 photo into 48x64 (w <= h): width 48, height int(48*300/400)=36, padded top 14
    assert resize_and_pad_layout((400, 300), (48, 64)) == (48, 36, 0, 14)
    assert resize_and_pad_layout((300, 400), (96, 64)) == (48, 64, 24, 0)
    kps = np.array([[100, 100], [300, 100], [200, 150], [120, 220], [280, 220]], np.float32)
    w, h, pts, _ = flux.adapter.photo_layout((400, 300), kps, None)
    assert (w, h) == (48, 64)
    np.testing.assert_allclose(pts[2], [(200.5) * 48 / 400 - 0.5, (150.5) * 36 / 300 - 0.5 + 14], atol=1e-4)


@pytest.mark.slow
def test_loras_stack(flux, tmp_path):
    from safetensors.torch import save_file

    pipe = flux.pipe
    targets = [n for n, m in pipe.transformer.named_modules()
               if isinstance(m, torch.nn.Linear) and n.endswith(("attn.to_q", "attn.to_v"))]

    def lora(seed: int) -> str:
        g = torch.Generator().manual_seed(seed)
        sd = {}
        for n in targets:
            mod = pipe.transformer.get_submodule(n)
            sd[f"transformer.{n}.lora_A.weight"] = torch.randn(4, mod.in_features, generator=g) * 0.3
            sd[f"transformer.{n}.lora_B.weight"] = torch.randn(mod.out_features, 4, generator=g) * 0.3
        path = tmp_path / f"lora{seed}.safetensors"
        save_file(sd, str(path))
        return str(path)

    base = make(flux, emb(1), 2)
    try:
        assert flux.adapter.load_loras(pipe, [(lora(1), "realism", 1.0)]) == ["realism"]
        one = make(flux, emb(1), 2)
        assert flux.adapter.load_loras(pipe, [(lora(2), "anti_blur", 1.0)]) == ["realism", "anti_blur"]
        assert sorted(pipe.get_active_adapters()) == ["anti_blur", "realism"]     # the first stays on
        both = make(flux, emb(1), 2)
        with pytest.raises(InvalidArgumentError, match="already loaded"):
            flux.adapter.load_loras(pipe, [(lora(3), "realism", 1.0)])
    finally:
        pipe.unload_lora_weights()
        pipe._facegen_loras = {}
    assert np.abs(one.astype(int) - base).mean() > 0.5 and np.abs(both.astype(int) - one).mean() > 0.5


# ----------------------------------------------------------------------------- loading

def test_tiny_checkpoints_load_strictly_and_tampering_is_refused(flux, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from facegen.adapters.infiniteyou import load_image_proj
    from facegen.models import get_preset, resolve_preset
    from facegen.models.checkpoints import resampler_shapes
    from facegen.models.loading_flux import load_model

    res = resolve_preset(get_preset(TINY))
    state = torch.load(res.file("image_proj"), weights_only=True)
    assert set(state) == {"image_proj"}
    assert set(state["image_proj"]) == set(resampler_shapes(128, 128, 32, num_queries=8, dim_head=64))
    extra = {"image_proj": {**state["image_proj"], "layers.9.0.to_q.weight": torch.zeros(1)}}
    with pytest.raises(InvalidArgumentError, match="unexpected 1 keys"):
        load_image_proj(extra, 128, 32, "image_proj_model.bin")
    # a transformer shard without one tensor: the loader names the missing key
    from diffusers import FluxTransformer2DModel

    src = res.repo_dir("base") / "transformer"
    dst = tmp_path / "transformer"
    shutil.copytree(src, dst)
    shard = sorted(dst.glob("*-00003-of-00003.safetensors"))[0]
    sd = load_file(str(shard))
    dropped = sorted(sd)[0]
    del sd[dropped]
    save_file(sd, str(shard))
    with pytest.raises(FacegenError, match="missing_keys"):
        load_model(FluxTransformer2DModel, dst, torch.float32)
    # the loaded twin has exactly the shipped keys (strict loaders raised otherwise)
    assert set(flux.pipe.image_proj_model.state_dict()) == set(state["image_proj"])


def test_every_tiny_file_is_the_real_layout():
    from facegen.models import PRESETS, get_preset, resolve_preset

    for name in (TINY, "tiny-infiniteyou-sim"):
        tiny = get_preset(name)
        real = PRESETS[tiny.twin]
        root = resolve_preset(tiny).root
        assert [c.files for c in tiny.components] == [c.files for c in real.components]
        for comp in tiny.components:
            for f in comp.files:
                assert (root / comp.repo / f).is_file(), f
    base = resolve_preset(get_preset(TINY)).repo_dir("base")
    from facegen.models.loading_flux import load_t5_tokenizer

    tok = load_t5_tokenizer(base / "tokenizer_2")
    ids = tok("a photo of a man").input_ids
    assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids


def test_missing_flux_weights_say_how_to_get_access(tmp_path):
    from facegen.errors import ModelNotFoundError
    from facegen.models import get_preset, resolve_preset

    with pytest.raises(ModelNotFoundError) as exc:
        resolve_preset(get_preset("infiniteyou"), ModelAccess(tmp_path), download=False)
    msg = str(exc.value)
    assert "black-forest-labs/FLUX.1-dev/transformer/diffusion_pytorch_model-00001-of-00003.safetensors" in msg
    assert "ByteDance/InfiniteYou/infu_flux_v1.0/aes_stage2/image_proj_model.bin" in msg
    assert "gated" in msg and "accept its licence" in msg and "\n" not in msg
    from facegen.models import preset_status

    st = preset_status(ModelAccess(tmp_path))["infiniteyou"]     # what `facegen doctor --json` lists
    assert "ByteDance/InfiniteYou/infu_flux_v1.0/aes_stage2/InfuseNetModel/config.json" in st["missing"]
    assert st["tiny_twin"] == TINY and "gated" in st["access"][0]


@pytest.mark.slow
def test_8bit_weights_load_through_diffusers_quantization():
    pytest.importorskip("optimum.quanto")
    q = IDGenerationPipeline.from_preset(TINY, device="cpu", fast_path=False, quantize="8bit")
    assert type(q.pipe.transformer.transformer_blocks[0].attn.to_q).__name__ == "QLinear"
    assert type(q.pipe.controlnet.transformer_blocks[0].attn.to_q).__name__ == "QLinear"
    out = pixels(q(id_embeds=[emb(1)], seed=3, num_inference_steps=1, progress=False, measure_similarity=False))
    assert out.shape == (1, 64, 48, 3) and out.std() > 1


def test_memory_and_edit_options_are_capabilities(flux):
    from facegen.app.presets import editable, preset_infos, takes_negative_prompt, takes_prompt
    from facegen.pipelines.swap import FaceSwapPipeline

    with pytest.raises(InvalidArgumentError, match="takes no '4bit' weights; choose one of: 8bit"):
        IDGenerationPipeline.from_preset(TINY, quantize="4bit")
    with pytest.raises(InvalidArgumentError, match="takes no '8bit' weights"):
        IDGenerationPipeline.from_preset("tiny", quantize="8bit")
    with pytest.raises(InvalidArgumentError, match="cannot run the edit jobs: FLUX inpainting"):
        FaceSwapPipeline.from_preset(TINY)                  # refused before any weight loads
    from facegen.pipelines.aging import FaceAgingPipeline

    with pytest.raises(InvalidArgumentError, match="cannot run the edit jobs"):
        FaceAgingPipeline(flux)                             # a loaded pipeline too
    names = {i.name for i in preset_infos()}
    assert {"infiniteyou", "infiniteyou-sim", TINY} <= names
    assert takes_prompt(TINY) and not takes_negative_prompt(TINY) and not editable("infiniteyou")


# ----------------------------------------------------------------------------- the IR-SE50 encoder

def test_ir_se_encoder_is_upstreams_bgr_contract(tmp_path):
    import cv2

    from facegen.faces.types import Face
    from facegen.id.encoders import build_analyzer
    from facegen.id.irse import IR50_STAGES, backbone_class, stages_of
    from facegen.id.registry import get_encoder_spec

    with torch.device("meta"):
        full = backbone_class()().state_dict()       # the released IR-SE50 layout (facexlib key names)
    assert stages_of(full) == IR50_STAGES and full["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert "body.0.res_layer.5.fc1.weight" in full and "body.3.shortcut_layer.0.weight" in full
    torch.manual_seed(0)
    small = backbone_class()(((16, 16, 1), (16, 24, 2), (24, 32, 1), (32, 48, 1)), 64, 7).eval()
    for m in small.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    (tmp_path / "facexlib").mkdir()
    torch.save(small.state_dict(), tmp_path / "facexlib" / "recognition_arcface_ir_se50.pth")
    spec = get_encoder_spec("infiniteyou-ir-se50")
    enc = build_analyzer(spec, ModelAccess(tmp_path, accept_license=True))   # the front door of the entry
    rgb = np.random.default_rng(0).integers(0, 256, (160, 140, 3), dtype=np.uint8)
    kps = np.array([[50, 60], [90, 60], [70, 85], [55, 110], [85, 110]], np.float32)
    got = enc.embed(rgb, Face(np.array([30, 30, 110, 130], np.float32), kps, 0.9))
    # upstream: norm_crop(bgr, kps, 112) → /255 → 2x-1 → IR-SE50 → [512] normalised
    from facegen.faces.align import umeyama   # insightface's estimate_norm (skimage SimilarityTransform)

    dst = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                    [70.7299, 92.2041]], np.float32)
    m = np.asarray(umeyama(kps, dst))[:2]
    crop = cv2.warpAffine(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), m, (112, 112), borderValue=0.0)
    x = torch.from_numpy(crop).unsqueeze(0).permute(0, 3, 1, 2) / 255.0 * 2 - 1
    with torch.no_grad():
        ref = small(x.float())[0].numpy()
    assert got.encoder == "infiniteyou-ir-se50" and abs(np.linalg.norm(got.vector) - 1) < 1e-5
    np.testing.assert_allclose(got.vector, ref, atol=1e-4)


# ----------------------------------------------------------------------------- CLI

@pytest.mark.slow
def test_cli_generate_twice_same_seed_same_files(tmp_path, tom_hanks_path):
    import json

    from PIL import Image

    def run(out: str) -> tuple[str, dict]:
        subprocess.run([sys.executable, "-m", "facegen", "generate", "--model", TINY, "--id", str(tom_hanks_path),
                        "--seed", "5", "--steps", "2", "--prompt", "a portrait of a man", "--out",
                        str(tmp_path / out), "--no-progress"], check=True, capture_output=True, timeout=300)
        with Image.open(tmp_path / out / "0000.png") as im:
            digest = hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()
        (record,) = [json.loads(line) for line in (tmp_path / out / "metadata.jsonl").read_text().splitlines()]
        return digest, record

    (a, meta_a), (b, meta_b) = run("a"), run("b")
    assert a == b                                           # the same pixels (the signed manifests differ in time)
    assert meta_a["seed"] == meta_b["seed"] == 5 and meta_a["preset"] == TINY
    assert meta_a["controlnet_scale"] == 1.0 and meta_a["scheduler"] == "flow-euler"


@pytest.mark.slow
def test_dataset_runs_the_batched_call_with_poses(tmp_path):
    from facegen.dataset.generator import make_generate_fn
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    spec = DatasetSpec(out=str(tmp_path / "ds"), model=TINY, num_ids=2, images_per_id=1, seed=3, shard_size=2,
                       format="imagefolder", poses=[15.0])
    run_dataset(spec, make_generate_fn(TINY, ModelAccess(device="cpu"), steps=1), progress=False)
    images = sorted(p for p in (tmp_path / "ds").rglob("*.png") if "crops" not in p.parts)
    assert len(images) == 2
