"""PuLID (SDXL v1.1, FLUX v0.9.1) on its tiny twins: the invariants of the other families, the
conditioning against independent re-implementations of upstream's ID path, strict loading and the
encoder contract.

The reference computations are written here from upstream's code as read (ToTheBeginning/PuLID
pulid/encoders_transformer.py ``IDFormer`` / ``PerceiverAttentionCA``, pulid/attention_processor.py
``IDAttnProcessor2_0``, flux/model.py's block loop): plain tensor functions over the checkpoint's
own tensors, so they share the weights and nothing else with facegen's modules.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegen.adapters.base import ConditionRequest, Sample
from facegen.errors import EncoderMismatchError, InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.pipelines.generation import IDGenerationPipeline

SDXL, FLUX = "tiny-pulid-sdxl", "tiny-pulid-flux"
TINY_ENCODER, TINY_DIM, EVA_WIDTH, TOKENS = "pulid-tiny", 192, 128, 17


def emb(seed: int, tokens: int = TOKENS, encoder: str = TINY_ENCODER, dim: int = TINY_DIM) -> IDEmbedding:
    """A pulid-tiny shaped condition: vector (128 dlib + 64 EVA CLS) and EVA hidden states (5, T, 128)."""
    r = np.random.default_rng(seed)
    return IDEmbedding(r.normal(size=dim).astype(np.float32), encoder,
                       meta={"vit_hidden": r.normal(size=(5, tokens, EVA_WIDTH)).astype(np.float32)})


@pytest.fixture(scope="module")
def sdxl() -> IDGenerationPipeline:
    return IDGenerationPipeline.from_preset(SDXL, device="cpu", fast_path=False)


@pytest.fixture(scope="module")
def flux() -> IDGenerationPipeline:
    return IDGenerationPipeline.from_preset(FLUX, device="cpu", fast_path=False)


def pixels(out) -> np.ndarray:
    return np.stack([np.asarray(im) for im in out.images])


def make(p: IDGenerationPipeline, e, seed: int, steps: int = 2, **kw) -> np.ndarray:
    return pixels(p(id_embeds=e if isinstance(e, list) else [e], seed=seed, num_inference_steps=steps,
                    progress=False, measure_similarity=False, **kw))


def request(p: IDGenerationPipeline, **kw) -> ConditionRequest:
    d = p.preset.defaults
    base = dict(prompt=None, negative_prompt=None, guidance_scale=d.guidance, height=d.height, width=d.width)
    return ConditionRequest(**{**base, **kw})


# ----------------------------------------------------------------------------- invariants

@pytest.mark.parametrize("name", [SDXL, FLUX])
def test_seeded_determinism_and_identities(name, sdxl, flux):
    p = {SDXL: sdxl, FLUX: flux}[name]
    a, b = make(p, emb(1), 3), make(p, emb(1), 3)
    assert np.array_equal(a, b)
    other = make(p, emb(2), 3)
    assert np.abs(a.astype(int) - other.astype(int)).mean() > 0.5
    assert not np.array_equal(a, make(p, emb(1), 4))


@pytest.mark.parametrize("name", [SDXL, FLUX])
def test_batch_equals_one_by_one(name, sdxl, flux):
    p = {SDXL: sdxl, FLUX: flux}[name]
    ids = [emb(5), emb(6), emb(7)]
    samples = [Sample.of(e) for e in ids]
    batch = pixels(p(samples=samples, seeds=[1, 2, 3], batch_size=3, num_inference_steps=2, progress=False,
                     measure_similarity=False))
    singles = np.concatenate([make(p, e, s) for e, s in zip(ids, (1, 2, 3))])
    assert np.abs(batch.astype(int) - singles.astype(int)).max() <= 1     # one UNet batch: float rounding only


def test_sdxl_id_scale_zero_is_the_base_pipeline(sdxl):
    from diffusers import StableDiffusionXLPipeline
    from diffusers.models.attention_processor import AttnProcessor2_0

    from facegen.models import loading as L

    p = sdxl.pipe
    sched = L.make_scheduler("dpm++-karras", p.scheduler.config)
    base = StableDiffusionXLPipeline(vae=p.vae, text_encoder=p.text_encoder, text_encoder_2=p.text_encoder_2,
                                     tokenizer=p.tokenizer, tokenizer_2=p.tokenizer_2, unet=p.unet, scheduler=sched)
    base.set_progress_bar_config(disable=True)
    d = sdxl.preset.defaults
    ours = p.unet.attn_processors
    p.unet.set_attn_processor(AttnProcessor2_0())                      # the stock UNet, no PuLID
    try:
        ref = base(d.prompt, negative_prompt=d.negative_prompt, num_inference_steps=2, guidance_scale=d.guidance,
                   height=64, width=64, generator=[torch.Generator().manual_seed(9)], output_type="np").images
    finally:
        p.unet.set_attn_processor(ours)
    ref = (ref * 255).round().astype(np.uint8)
    assert np.array_equal(make(sdxl, emb(3), 9, adapter_scale=0.0), ref)
    assert not np.array_equal(make(sdxl, emb(3), 9), ref)


def test_flux_id_weight_zero_and_a_late_start_are_the_plain_flux_pipeline(flux):
    from diffusers import FluxPipeline

    pipe = flux.pipe
    plain = FluxPipeline(transformer=pipe.transformer, vae=pipe.vae, text_encoder=pipe.text_encoder,
                         tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2,
                         scheduler=pipe.scheduler)
    common = dict(num_inference_steps=2, guidance_scale=4.0, height=64, width=48, output_type="latent")
    kwargs = flux.adapter.condition(pipe, [Sample.of(emb(9))], request(flux, adapter_scale=0.0))
    assert kwargs["pulid_id_scale"] == 0.0
    ours = pipe(**kwargs, generator=torch.Generator().manual_seed(0), **common).images
    base = plain(prompt=kwargs["prompt"], generator=torch.Generator().manual_seed(0), **common).images
    torch.testing.assert_close(ours, base, rtol=0, atol=0)
    on = dict(flux.adapter.condition(pipe, [Sample.of(emb(9))], request(flux)))
    late = pipe(**{**on, "pulid_start_step": 2}, generator=torch.Generator().manual_seed(0), **common).images
    torch.testing.assert_close(late, base, rtol=0, atol=0)            # from step 2 on: never, in 2 steps
    flux.adapter.id_start_step = 1                                   # the user's setting on a loaded pipeline
    try:
        assert flux.adapter.condition(pipe, [Sample.of(emb(9))], request(flux))["pulid_start_step"] == 1
    finally:
        del flux.adapter.id_start_step                               # back to the class default (0)
    second = pipe(**{**on, "pulid_start_step": 1}, generator=torch.Generator().manual_seed(0), **common).images
    first = pipe(**on, generator=torch.Generator().manual_seed(0), **common).images
    assert not torch.equal(second, base) and not torch.equal(first, second)
    assert not pipe.transformer._forward_hooks and not pipe.transformer._forward_pre_hooks   # hooks removed


# ----------------------------------------------------------------------------- upstream's ID path

def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"])


def _mlp(x, sd, p):
    x = F.leaky_relu(_ln(F.linear(x, sd[f"{p}.0.weight"], sd[f"{p}.0.bias"]), sd, f"{p}.1"))
    x = F.leaky_relu(_ln(F.linear(x, sd[f"{p}.3.weight"], sd[f"{p}.3.bias"]), sd, f"{p}.4"))
    return F.linear(x, sd[f"{p}.6.weight"], sd[f"{p}.6.bias"])


def _heads_attention(q, k, v, heads):
    b = q.shape[0]

    def split(t):
        return t.reshape(b, t.shape[1], heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, q.shape[1], -1)


def upstream_idformer(sd, x, y, num_id_token=5):
    """encoders_transformer.IDFormer.forward over a state dict (heads of 64)."""
    dim = sd["latents"].shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")}) // 5
    n = x.shape[1] if x.ndim == 3 else 1                            # several ID images: n condition rows
    ids = _mlp(x, sd, "id_embedding_mapping").reshape(x.shape[0], num_id_token * n, dim)
    latents = torch.cat([sd["latents"].repeat(x.shape[0], 1, 1), ids], dim=1)
    for i in range(5):
        ctx = torch.cat([ids, _mlp(y[i], sd, f"mapping_{i}")], dim=1)
        for j in range(i * depth, (i + 1) * depth):
            p = f"layers.{j}"
            c, lat = _ln(ctx, sd, f"{p}.0.norm1"), _ln(latents, sd, f"{p}.0.norm2")
            k, v = F.linear(torch.cat([c, lat], dim=1), sd[f"{p}.0.to_kv.weight"]).chunk(2, dim=-1)
            q = F.linear(lat, sd[f"{p}.0.to_q.weight"])
            latents = F.linear(_heads_attention(q, k, v, dim // 64), sd[f"{p}.0.to_out.weight"]) + latents
            h = F.gelu(F.linear(_ln(latents, sd, f"{p}.1.0"), sd[f"{p}.1.1.weight"]))
            latents = F.linear(h, sd[f"{p}.1.3.weight"]) + latents
    return latents[:, :sd["latents"].shape[1]] @ sd["proj_out"]


def upstream_ca(sd, p, ids, img, heads=16):
    """encoders_transformer.PerceiverAttentionCA.forward(ids, img)."""
    x, lat = _ln(ids, sd, f"{p}.norm1"), _ln(img, sd, f"{p}.norm2")
    k, v = F.linear(x, sd[f"{p}.to_kv.weight"]).chunk(2, dim=-1)
    return F.linear(_heads_attention(F.linear(lat, sd[f"{p}.to_q.weight"]), k, v, heads), sd[f"{p}.to_out.weight"])


def _checkpoint(p: IDGenerationPipeline, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from facegen.models import resolve_preset

    state = load_file(str(resolve_preset(p.preset).file("pulid")))
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


@pytest.mark.parametrize("name,prefix", [(SDXL, "id_adapter"), (FLUX, "pulid_encoder")])
def test_id_tokens_are_upstreams_idformer(name, prefix, sdxl, flux):
    p = {SDXL: sdxl, FLUX: flux}[name]
    sd = _checkpoint(p, prefix)
    e = emb(11)
    tokens, uncond = p.adapter.id_tokens(p.pipe, [e])
    x = torch.from_numpy(e.vector)[None]
    y = [torch.from_numpy(h)[None] for h in e.meta["vit_hidden"]]
    torch.testing.assert_close(tokens, upstream_idformer(sd, x, y), rtol=1e-4, atol=1e-5)
    # upstream's unconditional tokens: the IDFormer of zeros shaped like the condition
    torch.testing.assert_close(uncond, upstream_idformer(sd, torch.zeros_like(x), [torch.zeros_like(t) for t in y]),
                               rtol=1e-4, atol=1e-5)
    assert tokens.shape == (1, 32, sd["proj_out"].shape[1])


def test_several_photos_are_fed_as_upstream_feeds_several_id_images(sdxl):
    """pipeline_v1_1.get_id_embedding(image_list): id_cond rows stacked (1, n, D), hidden states
    concatenated along the tokens; the unconditional tokens from zeros shaped like ONE image's."""
    sd = _checkpoint(sdxl, "id_adapter")
    a, b = emb(21), emb(22)
    both = IDEmbedding(((a.vector + b.vector) / 2).astype(np.float32), TINY_ENCODER,
                       meta={"vit_hidden": np.concatenate([a.meta["vit_hidden"], b.meta["vit_hidden"]], axis=1),
                             "id_conds": np.stack([a.vector, b.vector])})
    tokens, uncond = sdxl.adapter.id_tokens(sdxl.pipe, [both])
    x = torch.from_numpy(np.stack([a.vector, b.vector]))[None]
    y = [torch.from_numpy(h)[None] for h in both.meta["vit_hidden"]]
    torch.testing.assert_close(tokens, upstream_idformer(sd, x, y), rtol=1e-4, atol=1e-5)
    zeros = [torch.zeros(1, TOKENS, EVA_WIDTH)] * 5
    torch.testing.assert_close(uncond, upstream_idformer(sd, torch.zeros(1, TINY_DIM), zeros), rtol=1e-4, atol=1e-5)
    with pytest.raises(EncoderMismatchError, match="id_conds of shape"):
        bad = IDEmbedding(both.vector, TINY_ENCODER, meta={**both.meta, "id_conds": np.zeros((3, TINY_DIM), np.float32)})
        sdxl.adapter.id_tokens(sdxl.pipe, [bad])


def test_sdxl_cross_attention_is_upstreams_id_processor(sdxl):
    unet = sdxl.pipe.unet
    sd = _checkpoint(sdxl, "id_adapter_attn_layers")
    names = list(unet.attn_processors)
    k = next(i for i, n in enumerate(names) if n.endswith("attn2.processor"))
    attn = unet.get_submodule(names[k].rsplit(".", 1)[0])
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 16, attn.to_q.in_features, generator=g)
    text = torch.randn(2, 7, attn.to_k.in_features, generator=g)
    ids = torch.randn(2, 32, attn.to_k.in_features, generator=g)
    with torch.no_grad():
        ours = attn(hidden, encoder_hidden_states=text, id_embedding=ids, id_scale=0.7)
        plain = attn(hidden, encoder_hidden_states=text, id_embedding=ids, id_scale=0.0)
    # IDAttnProcessor2_0: text attention + id_scale * attention over id_to_k / id_to_v, then to_out
    h = attn.heads
    q = F.linear(hidden, attn.to_q.weight)
    txt = _heads_attention(q, F.linear(text, attn.to_k.weight), F.linear(text, attn.to_v.weight), h)
    idh = _heads_attention(q, F.linear(ids, sd[f"{k}.id_to_k.weight"]), F.linear(ids, sd[f"{k}.id_to_v.weight"]), h)
    ref = F.linear(txt + 0.7 * idh, attn.to_out[0].weight, attn.to_out[0].bias)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    ref0 = F.linear(txt, attn.to_out[0].weight, attn.to_out[0].bias)
    torch.testing.assert_close(plain, ref0, rtol=1e-4, atol=1e-5)


def test_sdxl_negative_rows_see_the_unconditional_tokens(sdxl):
    kwargs = sdxl.adapter.condition(sdxl.pipe, [Sample.of(emb(1)), Sample.of(emb(2))], request(sdxl))
    tokens, uncond = sdxl.adapter.id_tokens(sdxl.pipe, [emb(1), emb(2)])
    ids = kwargs["cross_attention_kwargs"]["id_embedding"]
    assert kwargs["cross_attention_kwargs"]["id_scale"] == 1.0
    torch.testing.assert_close(ids, torch.cat([uncond, tokens]))       # [negatives, positives] as diffusers' CFG


def test_flux_injection_is_upstreams_block_loop():
    """flux/model.py: after double block i (i % 2 == 0) and single block i (i % 4 == 0),
    ``img = img + id_weight * pulid_ca[ca_idx](id, img)``; here on a 3 + 5 block transformer."""
    from diffusers import FluxTransformer2DModel
    from torch import nn

    from facegen.adapters.pulid import FluxIDInjection, ca_positions, modules

    torch.manual_seed(0)
    t = FluxTransformer2DModel(patch_size=1, in_channels=8, num_layers=3, num_single_layers=5, attention_head_dim=8,
                               num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16,
                               guidance_embeds=True, axes_dims_rope=(2, 2, 4)).eval()
    attention, _ = modules()
    n = len(ca_positions(3, 5))
    assert n == 4 and len(ca_positions(19, 38)) == 20              # released FLUX.1-dev: 20 blocks
    cas = nn.ModuleList(attention(16, 2, 16, kv_dim=12) for _ in range(n)).eval()
    sd = {k: v for k, v in cas.state_dict().items()}
    ids = torch.randn(1, 32, 12)
    inp = dict(hidden_states=torch.randn(1, 6, 8), encoder_hidden_states=torch.randn(1, 4, 16),
               pooled_projections=torch.randn(1, 16), timestep=torch.tensor([0.5]), img_ids=torch.zeros(6, 3),
               txt_ids=torch.zeros(4, 3), guidance=torch.tensor([3.5]), return_dict=False)
    with torch.no_grad(), FluxIDInjection(t, cas, ids, 0.8, start_step=0):
        ours = t(**inp)[0]
    with torch.no_grad():                                          # the loop of flux/model.py on diffusers' blocks
        hid = t.x_embedder(inp["hidden_states"])
        temb = t.time_text_embed(inp["timestep"] * 1000, inp["guidance"] * 1000, inp["pooled_projections"])
        txt = t.context_embedder(inp["encoder_hidden_states"])
        rope = t.pos_embed(torch.cat([inp["txt_ids"], inp["img_ids"]]))
        ca = 0
        for i, block in enumerate(t.transformer_blocks):
            txt, hid = block(hidden_states=hid, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope)
            if i % 2 == 0:
                hid = hid + 0.8 * upstream_ca(sd, str(ca), ids, hid)
                ca += 1
        for i, block in enumerate(t.single_transformer_blocks):
            txt, hid = block(hidden_states=hid, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope)
            if i % 4 == 0:
                hid = hid + 0.8 * upstream_ca(sd, str(ca), ids, hid)
                ca += 1
        ref = t.proj_out(t.norm_out(hid, temb))
    assert ca == n
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- loading and contracts

def test_tiny_files_are_the_released_layouts(sdxl, flux):
    from safetensors.torch import load_file

    from facegen.models import PRESETS, resolve_preset

    for p, prefixes, n_ca in ((sdxl, {"id_adapter", "id_adapter_attn_layers"}, None),
                              (flux, {"pulid_encoder", "pulid_ca"}, 2)):
        real = PRESETS[p.preset.twin]
        assert [c.files for c in p.preset.components] == [c.files for c in real.components]
        assert real.component("pulid").repo == "guozinan/PuLID" and real.needs_licence
        state = load_file(str(resolve_preset(p.preset).file("pulid")))
        assert {k.split(".")[0] for k in state} == prefixes
        if n_ca:
            assert {int(k.split(".")[1]) for k in state if k.startswith("pulid_ca.")} == set(range(n_ca))
    keys = [k for k in load_file(str(resolve_preset(sdxl.preset).file("pulid"))) if "attn_layers" in k]
    assert all(int(k.split(".")[1]) % 2 == 1 for k in keys)       # cross-attention processors: odd places
    assert "Apache-2.0" in real.licence and "FLUX.1 [dev]" in real.licence and "insightface" in real.licence
    assert "DreamShaper" in PRESETS["pulid-sdxl"].licence


def test_strict_loading_names_the_bad_tensors(sdxl, flux):
    from safetensors.torch import load_file

    from facegen.adapters.pulid import load_flux_pulid, load_sdxl_pulid
    from facegen.models import resolve_preset

    state = load_file(str(resolve_preset(sdxl.preset).file("pulid")))
    with pytest.raises(InvalidArgumentError, match=r"unexpected 1 keys \(layers\.9\.0\.to_q\.weight\)"):
        load_sdxl_pulid(sdxl.pipe, {**state, "id_adapter.layers.9.0.to_q.weight": torch.zeros(1)}, 192, "f")
    dropped = "id_adapter_attn_layers.1.id_to_v.weight"
    with pytest.raises(InvalidArgumentError, match=r"missing 1 keys \(1\.id_to_v\.weight\)"):
        load_sdxl_pulid(sdxl.pipe, {k: v for k, v in state.items() if k != dropped}, 192, "f")
    with pytest.raises(InvalidArgumentError, match="unexpected tensors.*pulid_ca.0.to_q.weight"):
        load_sdxl_pulid(sdxl.pipe, {**state, "pulid_ca.0.to_q.weight": torch.zeros(1)}, 192, "f")
    with pytest.raises(InvalidArgumentError, match="takes 192-D ID vectors, the preset 1280-D"):
        load_sdxl_pulid(sdxl.pipe, state, 1280, "f")
    fstate = load_file(str(resolve_preset(flux.preset).file("pulid")))
    with pytest.raises(InvalidArgumentError, match="no pulid_ca"):
        load_flux_pulid(flux.pipe, {k: v for k, v in fstate.items() if not k.startswith("pulid_ca")}, 192, "f",
                        torch.float32)
    with pytest.raises(InvalidArgumentError, match=r"unexpected .*2\.norm1\.bias"):   # one block too many
        extra = {f"pulid_ca.2.{k[len('pulid_ca.0.'):]}": v for k, v in fstate.items() if k.startswith("pulid_ca.0.")}
        load_flux_pulid(flux.pipe, {**fstate, **extra}, 192, "f", torch.float32)
    with pytest.raises(InvalidArgumentError, match="SDXL|id_adapter"):                # a FLUX file on SDXL
        load_sdxl_pulid(sdxl.pipe, fstate, 192, "f")


def test_the_encoder_contract_refuses_other_conditions(sdxl, flux):
    no_hidden = IDEmbedding(np.ones(TINY_DIM, np.float32), TINY_ENCODER)
    for p in (sdxl, flux):
        with pytest.raises(EncoderMismatchError, match="vit_hidden.*encoder='pulid-tiny'"):
            make(p, no_hidden, 1)
        with pytest.raises(EncoderMismatchError, match="trained on 'pulid-tiny'"):
            make(p, IDEmbedding(np.ones(128, np.float32), "dlib-resnet-v1"), 1)
        with pytest.raises(EncoderMismatchError, match="128-wide EVA hidden states, got 8"):
            bad = IDEmbedding(np.ones(TINY_DIM, np.float32), TINY_ENCODER,
                              meta={"vit_hidden": np.zeros((5, 3, 8), np.float32)})
            make(p, bad, 1)
        with pytest.raises(EncoderMismatchError, match=r"\(5, T, W\)"):
            make(p, IDEmbedding(np.ones(TINY_DIM, np.float32), TINY_ENCODER,
                                meta={"vit_hidden": np.zeros((4, 3, 32), np.float32)}), 1)
    # and the reverse: a PuLID condition fed to another family
    other = IDGenerationPipeline.from_preset("tiny-faceid", device="cpu", fast_path=False)
    with pytest.raises(EncoderMismatchError, match="'pulid-tiny'"):
        make(other, emb(1), 1)


def test_capabilities_are_class_data(sdxl, flux):
    from facegen.adapters.registry import adapter_class, check_people

    s, f = adapter_class("pulid-sdxl"), adapter_class("pulid-flux")
    assert s.supports_prompt and s.supports_negative_prompt and s.supports_adapter_scale
    assert f.supports_prompt and not f.supports_negative_prompt and f.supports_adapter_scale
    assert s.max_people == f.max_people == 1 and not s.supports_edit and not f.supports_edit
    assert f.quantize_choices == ("8bit",) and f.cuda_dtype == "bf16"
    with pytest.raises(InvalidArgumentError, match="negative prompt"):
        make(flux, emb(1), 1, negative_prompt="blurry")
    with pytest.raises(InvalidArgumentError, match="presets that take 2 people: .*instantid"):
        check_people(sdxl.preset, 2)
    with pytest.raises(InvalidArgumentError, match="cannot run the edit jobs"):
        s.check_editable("pulid-sdxl")
    d = sdxl.preset.defaults
    real = __import__("facegen.models", fromlist=["PRESETS"]).PRESETS["pulid-sdxl"].defaults
    assert (real.steps, real.guidance, real.scheduler, real.adapter_scale) == (4, 1.2, "dpm++-karras", 1.0)
    assert (d.height, d.width, flux.preset.defaults.width) == (64, 64, 48)


def test_a_user_named_sdxl_base_is_a_preset():
    from facegen.models.presets_pulid import pulid_sdxl_preset

    p = pulid_sdxl_preset("pulid-juggernaut", "RunDiffusion/Juggernaut-XL-v9", "sdxl-openrail++-m")
    assert p.component("base").repo == "RunDiffusion/Juggernaut-XL-v9" and p.family == "pulid-sdxl"
    assert p.component("pulid").files == ("pulid_v1.1.safetensors",) and "Apache-2.0" in p.licence
    assert math.isclose(p.defaults.guidance, 1.2)


def test_cli_generate_with_the_tiny_preset(tmp_path, tom_hanks_path):
    """One photo through the CLI: the pulid-tiny front door embeds it (vector + EVA hidden states), the
    tiny PuLID SDXL twin generates, twice the same pixels."""
    import hashlib
    import json
    import subprocess
    import sys

    from PIL import Image

    def run(out: str) -> tuple[str, dict]:
        proc = subprocess.run([sys.executable, "-m", "facegen", "generate", "--model", SDXL, "--id", str(tom_hanks_path),
                               "--seed", "5", "--steps", "2", "--prompt", "a portrait of a man", "--out",
                               str(tmp_path / out), "--no-progress"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        with Image.open(tmp_path / out / "0000.png") as im:
            digest = hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()
        (record,) = [json.loads(line) for line in (tmp_path / out / "metadata.jsonl").read_text().splitlines()]
        return digest, record

    (a, meta_a), (b, _) = run("a"), run("b")
    assert a == b and meta_a["preset"] == SDXL and meta_a["seed"] == 5


@pytest.mark.slow
def test_flux_8bit_weights_keep_the_injection():
    """``quantize='8bit'`` (int8 transformer + T5 through diffusers' quanto config): the hooks sit on the
    quantized blocks and the cross-attention blocks stay in the pipeline's dtype."""
    pytest.importorskip("optimum.quanto")
    p = IDGenerationPipeline.from_preset(FLUX, device="cpu", quantize="8bit", fast_path=False)
    assert type(p.pipe.transformer.transformer_blocks[0].attn.to_q).__name__ == "QLinear"
    a, b = make(p, emb(1), 3, steps=1), make(p, emb(2), 3, steps=1)
    assert a.shape == (1, 64, 48, 3) and not np.array_equal(a, b)
    assert next(p.pipe.pulid_ca.parameters()).dtype == torch.float32
