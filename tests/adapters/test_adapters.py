"""The three adapter families: encoder contracts and the conditioning each builds.

The reference computations below are written from the upstream descriptions in
../shared/reference/compat.md (Arc2Face id-token substitution, FaceID MLPProjModel,
InstantID/IP-Adapter Resampler, IdentityNet fed the face tokens), not from facegen's code.
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


def emb(seed: int, encoder: str = "dlib-resnet-v1", dim: int = 128, scale: float = 1.0) -> IDEmbedding:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return IDEmbedding(scale * v / np.linalg.norm(v) * 0.6, encoder)


def request(pipe: IDGenerationPipeline, **kw) -> ConditionRequest:
    d = pipe.preset.defaults
    base = dict(prompt=None, negative_prompt=None, guidance_scale=d.guidance, height=64, width=64)
    base.update(kw)
    return ConditionRequest(**base)


@pytest.fixture(scope="module")
def arc2face() -> IDGenerationPipeline:
    return IDGenerationPipeline.from_preset("tiny", device="cpu", fast_path=False)


@pytest.fixture(scope="module")
def faceid() -> IDGenerationPipeline:
    return IDGenerationPipeline.from_preset("tiny-faceid", device="cpu", fast_path=False)


@pytest.fixture(scope="module")
def instantid() -> IDGenerationPipeline:
    return IDGenerationPipeline.from_preset("tiny-instantid", device="cpu", fast_path=False)


@pytest.fixture(params=["arc2face", "faceid", "instantid"])
def any_pipe(request, arc2face, faceid, instantid) -> IDGenerationPipeline:
    return {"arc2face": arc2face, "faceid": faceid, "instantid": instantid}[request.param]


# ----------------------------------------------------------------------------- contracts

def test_wrong_encoder_is_refused(any_pipe):
    adapter = any_pipe.adapter
    assert adapter.encoder == "dlib-resnet-v1"
    wrong = IDEmbedding(np.ones(512, np.float32), "buffalo_l-w600k-r50")
    with pytest.raises(EncoderMismatchError, match="buffalo_l-w600k-r50"):
        adapter.condition(any_pipe.pipe, [Sample.of([wrong])], request(any_pipe))
    with pytest.raises(EncoderMismatchError, match="128-D"):
        adapter.check_embedding(IDEmbedding(np.ones(64, np.float32), "dlib-resnet-v1"))


def test_real_presets_declare_their_real_encoders():
    from facegen.models import get_preset
    from facegen.pipelines.generation import adapter_for

    expected = {"arc2face": ("arc2face-arcface", True), "faceid-sd15": ("buffalo_l-w600k-r50", True),
                "faceid-sdxl": ("buffalo_l-w600k-r50", True), "instantid": ("antelopev2-glintr100", False)}
    for name, (encoder, normalised) in expected.items():
        adapter = adapter_for(get_preset(name))
        assert (adapter.encoder, adapter.normalise) == (encoder, normalised)
        with pytest.raises(EncoderMismatchError):
            adapter.check_embedding(emb(0))  # a dlib vector into a real preset


# ----------------------------------------------------------------------------- Arc2Face

def test_arc2face_substitutes_the_id_token(arc2face):
    pipe = arc2face.pipe
    e = emb(1)
    kwargs = arc2face.adapter.condition(pipe, [Sample.of([e])], request(arc2face))
    got = kwargs["prompt_embeds"]
    assert got.shape == (1, 77, pipe.text_encoder.config.hidden_size)
    # reference: the same encoder whose embedding row for the 'id' token *is* the padded unit vector
    import copy

    te = copy.deepcopy(pipe.text_encoder)
    tok = pipe.tokenizer
    id_token = tok.encode("id", add_special_tokens=False)[0]
    vec = torch.from_numpy(e.normalised())
    with torch.no_grad():
        te.get_input_embeddings().weight[id_token] = F.pad(vec, (0, te.config.hidden_size - vec.numel()))
        ids = tok("photo of a id person", padding="max_length", max_length=77, truncation=True,
                  return_tensors="pt").input_ids
        expected = te(input_ids=ids)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_arc2face_negative_is_the_empty_prompt_through_its_encoder(arc2face):
    pipe = arc2face.pipe
    kwargs = arc2face.adapter.condition(pipe, [Sample.of([emb(1)])], request(arc2face))
    ids = pipe.tokenizer("", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = pipe.text_encoder(input_ids=ids)[0]
    torch.testing.assert_close(kwargs["negative_prompt_embeds"], expected, rtol=0, atol=0)
    no_cfg = arc2face.adapter.condition(pipe, [Sample.of([emb(1)])], request(arc2face, guidance_scale=1.0))
    assert "negative_prompt_embeds" not in no_cfg


def test_arc2face_normalises_and_takes_no_text(arc2face):
    pipe, ad = arc2face.pipe, arc2face.adapter
    a = ad.condition(pipe, [Sample.of([emb(2)])], request(arc2face))["prompt_embeds"]
    b = ad.condition(pipe, [Sample.of([emb(2, scale=3.0)])], request(arc2face))["prompt_embeds"]
    torch.testing.assert_close(a, b)  # L2-normalised input: the vector's length does not matter
    with pytest.raises(InvalidArgumentError, match="photo of a id person"):
        ad.condition(pipe, [Sample.of([emb(2)])], request(arc2face, prompt="a man on a beach"))
    with pytest.raises(InvalidArgumentError, match="adapter scale"):
        ad.condition(pipe, [Sample.of([emb(2)])], request(arc2face, adapter_scale=0.5))


# ----------------------------------------------------------------------------- FaceID

def test_faceid_embeds_are_zeros_then_the_unit_vector(faceid):
    kwargs = faceid.adapter.condition(faceid.pipe, [Sample.of([emb(3, scale=2.0)])], request(faceid))
    (embeds,) = kwargs["ip_adapter_image_embeds"]
    assert embeds.shape == (2, 1, 128)
    assert torch.count_nonzero(embeds[0]) == 0
    torch.testing.assert_close(embeds[1, 0].norm(), torch.tensor(1.0))
    assert kwargs["prompt_embeds"].shape[0] == 1 and kwargs["negative_prompt_embeds"].shape[0] == 1  # the preset's texts, encoded


def test_faceid_projection_is_the_upstream_mlp(faceid):
    layer = faceid.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    from facegen.models import get_preset, resolve_preset

    sd = torch.load(resolve_preset(get_preset("tiny-faceid")).file("ip_adapter"), weights_only=True)["image_proj"]
    x = torch.from_numpy(emb(4).normalised())[None]
    h = F.linear(x, sd["proj.0.weight"], sd["proj.0.bias"])
    h = F.linear(F.gelu(h), sd["proj.2.weight"], sd["proj.2.bias"])
    cross = sd["norm.weight"].numel()
    expected = F.layer_norm(h.reshape(-1, 4, cross), (cross,), sd["norm.weight"], sd["norm.bias"])
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_faceid_several_identities_need_one_mask_each(faceid):
    h = w = 64
    left = np.zeros((h, w), np.uint8)
    left[:, : w // 2] = 1
    right = 1 - left
    req = request(faceid, masks=[left, right])
    kwargs = faceid.adapter.condition(faceid.pipe, [Sample.of([emb(5), emb(6)])], req)
    (embeds,) = kwargs["ip_adapter_image_embeds"]
    assert embeds.shape == (2, 2, 128)
    (masks,) = kwargs["cross_attention_kwargs"]["ip_adapter_masks"]
    assert masks.shape == (1, 2, h, w)
    assert masks[0, 0, :, : w // 2].min() == 1 and masks[0, 0, :, w // 2:].max() == 0
    with pytest.raises(InvalidArgumentError, match="one region mask per identity"):
        faceid.adapter.condition(faceid.pipe, [Sample.of([emb(5), emb(6)])], request(faceid))
    faceid.adapter.condition(faceid.pipe, [Sample.of([emb(5)])], request(faceid))  # back to one identity


# ----------------------------------------------------------------------------- InstantID

def test_draw_kps_matches_the_identitynet_drawing():
    from facegen.faces.pose import KPS_COLORS, draw_kps

    kps = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    img = np.asarray(draw_kps(100, 100, kps, stick_width=2, radius=3))
    assert img.shape == (100, 100, 3) and img[0, 0].tolist() == [0, 0, 0]
    for (x, y), colour in zip(kps.astype(int), KPS_COLORS):
        assert img[y, x].tolist() == list(colour)          # dots at full colour
    mid = ((kps[0] + kps[2]) / 2).astype(int)              # limb eye->nose at 60 %
    assert img[mid[1], mid[0]].tolist() == [int(c * 0.6) for c in KPS_COLORS[0]]


def test_portrait_kps_keeps_the_layout_and_frames_it():
    from facegen.faces.pose import portrait_kps

    src = np.array([[100, 100], [140, 104], [120, 125], [104, 150], [136, 152]], np.float32)
    out = portrait_kps(src, 256, 128)
    np.testing.assert_allclose(out.mean(axis=0), [128, 0.45 * 128], atol=1e-3)
    span = np.linalg.norm(out[3:].mean(0) - out[:2].mean(0))
    assert span == pytest.approx(0.16 * 128, rel=1e-4)
    a, b = src[1] - src[0], out[1] - out[0]           # same roll angle
    assert math.atan2(a[1], a[0]) == pytest.approx(math.atan2(b[1], b[0]), abs=1e-5)


def _resampler_reference(sd: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """IP-Adapter/InstantID Resampler forward written from the upstream description."""
    lat = sd["latents"].repeat(x.shape[0], 1, 1)
    x = F.linear(x, sd["proj_in.weight"], sd["proj_in.bias"])
    dim = lat.shape[-1]
    for i in range(4):
        p = f"layers.{i}"
        xn = F.layer_norm(x, (dim,), sd[f"{p}.0.norm1.weight"], sd[f"{p}.0.norm1.bias"])
        ln = F.layer_norm(lat, (dim,), sd[f"{p}.0.norm2.weight"], sd[f"{p}.0.norm2.bias"])
        q = F.linear(ln, sd[f"{p}.0.to_q.weight"])
        k, v = F.linear(torch.cat([xn, ln], dim=-2), sd[f"{p}.0.to_kv.weight"]).chunk(2, dim=-1)
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        s = 1 / math.sqrt(math.sqrt(q.shape[-1]))
        w = torch.softmax((q * s) @ (k * s).transpose(-2, -1), dim=-1)
        out = (w @ v).transpose(1, 2).reshape(lat.shape[0], lat.shape[1], -1)
        lat = F.linear(out, sd[f"{p}.0.to_out.weight"]) + lat
        ff = F.layer_norm(lat, (dim,), sd[f"{p}.1.0.weight"], sd[f"{p}.1.0.bias"])
        ff = F.linear(F.gelu(F.linear(ff, sd[f"{p}.1.1.weight"])), sd[f"{p}.1.3.weight"])
        lat = ff + lat
    out = F.linear(lat, sd["proj_out.weight"], sd["proj_out.bias"])
    return F.layer_norm(out, (out.shape[-1],), sd["norm_out.weight"], sd["norm_out.bias"])


def test_instantid_resampler_is_the_upstream_function(instantid):
    from facegen.models import get_preset, resolve_preset

    sd = torch.load(resolve_preset(get_preset("tiny-instantid")).file("ip_adapter"), weights_only=True)["image_proj"]
    layer = instantid.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    x = torch.from_numpy(np.stack([emb(7).vector, np.zeros(128, np.float32)]))[:, None, :]
    heads = sd["layers.0.0.to_q.weight"].shape[0] // 64
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _resampler_reference(sd, x, heads), rtol=1e-4, atol=1e-4)


def test_instantid_feeds_identitynet_the_face_tokens_only(instantid):
    pipe, ad = instantid.pipe, instantid.adapter
    e = emb(8, scale=5.0)
    kwargs = ad.condition(pipe, [Sample.of([e])], request(instantid))
    (embeds,) = kwargs["ip_adapter_image_embeds"]
    assert embeds.shape == (2, 1, 1, 128) and torch.count_nonzero(embeds[0]) == 0
    torch.testing.assert_close(embeds[1].flatten(), torch.from_numpy(e.vector))  # raw, not normalised
    assert [im.size for im in kwargs["image"]] == [(64, 64)] and kwargs["controlnet_conditioning_scale"] == 0.8
    seen = []
    hook = pipe.controlnet.register_forward_hook(  # sees the kwargs forward actually received
        lambda m, a, k, out: seen.append(k["encoder_hidden_states"].clone()), with_kwargs=True)
    try:
        pipe(**kwargs, num_inference_steps=1, guidance_scale=5.0, generator=[torch.Generator().manual_seed(0)],
             output_type="latent")
    finally:
        hook.remove()
    proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    with torch.no_grad():
        expected = proj(embeds.reshape(2, 1, 128))           # [Resampler(0), Resampler(e)]
    assert len(seen) == 1 and seen[0].shape == (2, 16, pipe.unet.config.cross_attention_dim)
    torch.testing.assert_close(seen[0], expected)
