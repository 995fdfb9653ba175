"""PuLID's ID condition (issue 30, encoder side): the EVA02-CLIP tower and facexlib's parser on their
released layouts, checked against independent re-implementations of upstream's code on shared random
weights; strict loading; the pulid-tiny entry end to end on a real photo; the encoder contract; the
token states kept by means and saved embeddings."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegen.errors import EncoderMismatchError, InvalidArgumentError
from facegen.id.embedding import IDEmbedding, mean_embedding
from facegen.models.eva_clip import (EVA02_L14_336, FACEXLIB_BISENET, TINY_BISENET, TINY_EVA, BiSeNetConfig,
                                     EvaConfig, bisenet_shapes, eva_visual_shapes)

# ----------------------------------------------------------------------------- independent references
# Written from upstream's code (ToTheBeginning/PuLID @1aa2fc7 eva_clip/eva_vit_model.py, rope.py; facexlib
# parsing/bisenet.py, resnet.py), in upstream's own formulation: fused qkv bias, explicit softmax, einops-style
# rotate_half on broadcast-concatenated rope tables, the literal ``0 < idx <= 20 and idx % 4 == 0`` rule.


def upstream_rope(head_dim: int, grid: int, pt_seq_len: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    dim = head_dim // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    t = torch.arange(grid) / grid * pt_seq_len
    f = torch.einsum("i,f->if", t, freqs)
    f = torch.stack([f, f], dim=-1).reshape(grid, -1)                       # '... n -> ... (n r)', r=2
    f = torch.cat([f[:, None, :].expand(grid, grid, -1), f[None, :, :].expand(grid, grid, -1)], dim=-1)
    return f.cos().view(-1, f.shape[-1]), f.sin().view(-1, f.shape[-1])


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(*x.shape[:-1], -1, 2)
    x1, x2 = x.unbind(-1)
    return torch.stack((-x2, x1), dim=-1).reshape(*x.shape[:-2], -1)


def upstream_eva(sd: dict[str, torch.Tensor], x: torch.Tensor, heads: int, grid: int):
    ln = lambda t, p: F.layer_norm(t, t.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-6)  # noqa: E731
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=x.shape[-1] // grid)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat((sd["cls_token"].expand(x.shape[0], -1, -1), x), dim=1) + sd["pos_embed"]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    cos, sin = upstream_rope(x.shape[-1] // heads, grid)
    hidden = []
    for idx in range(depth):
        if 0 < idx <= 20 and idx % 4 == 0:
            hidden.append(x)
        b = f"blocks.{idx}."
        h = ln(x, b + "norm1")
        B, N, C = h.shape
        q = F.linear(h, sd[b + "attn.q_proj.weight"], sd[b + "attn.q_bias"])
        k = F.linear(h, sd[b + "attn.k_proj.weight"], None)
        v = F.linear(h, sd[b + "attn.v_proj.weight"], sd[b + "attn.v_bias"])
        q, k, v = (t.reshape(B, N, heads, -1).permute(0, 2, 1, 3) for t in (q, k, v))
        q = torch.cat((q[:, :, :1], q[:, :, 1:] * cos + rotate_half(q[:, :, 1:]) * sin), -2)
        k = torch.cat((k[:, :, :1], k[:, :, 1:] * cos + rotate_half(k[:, :, 1:]) * sin), -2)
        attn = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        x = x + F.linear(ln(o, b + "attn.inner_attn_ln"), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = ln(x, b + "norm2")
        m = F.silu(F.linear(h, sd[b + "mlp.w1.weight"], sd[b + "mlp.w1.bias"])) * \
            F.linear(h, sd[b + "mlp.w2.weight"], sd[b + "mlp.w2.bias"])
        x = x + F.linear(ln(m, b + "mlp.ffn_ln"), sd[b + "mlp.w3.weight"], sd[b + "mlp.w3.bias"])
    return F.linear(ln(x, "norm")[:, 0], sd["head.weight"], sd["head.bias"]), hidden


def upstream_bisenet(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, 1e-5)

    def cbr(t, p, pad):
        return F.relu(bn(F.conv2d(t, sd[p + ".conv.weight"], padding=pad), p + ".bn"))

    def block(t, p, stride):
        r = F.relu(bn(F.conv2d(t, sd[p + ".conv1.weight"], stride=stride, padding=1), p + ".bn1"))
        r = bn(F.conv2d(r, sd[p + ".conv2.weight"], padding=1), p + ".bn2")
        s = t if p + ".downsample.0.weight" not in sd else \
            bn(F.conv2d(t, sd[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
        return F.relu(s + r)

    def arm(t, p):
        feat = cbr(t, p + ".conv", 1)
        a = torch.sigmoid(bn(F.conv2d(F.avg_pool2d(feat, feat.size()[2:]), sd[p + ".conv_atten.weight"]),
                             p + ".bn_atten"))
        return feat * a

    h, w = x.shape[2:]
    r = F.relu(bn(F.conv2d(x, sd["cp.resnet.conv1.weight"], stride=2, padding=3), "cp.resnet.bn1"))
    r = F.max_pool2d(r, 3, 2, 1)
    feats = []
    for i in range(1, 5):
        nb = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(f"cp.resnet.layer{i}."))
        for j in range(nb):
            r = block(r, f"cp.resnet.layer{i}.{j}", 2 if (j == 0 and i > 1) else 1)
        feats.append(r)
    f8, f16, f32 = feats[1:]
    avg = cbr(F.avg_pool2d(f32, f32.size()[2:]), "cp.conv_avg", 0)
    up32 = cbr(F.interpolate(arm(f32, "cp.arm32") + F.interpolate(avg, f32.shape[2:], mode="nearest"),
                             f16.shape[2:], mode="nearest"), "cp.conv_head32", 1)
    up16 = cbr(F.interpolate(arm(f16, "cp.arm16") + up32, f8.shape[2:], mode="nearest"), "cp.conv_head16", 1)
    feat = cbr(torch.cat([f8, up16], dim=1), "ffm.convblk", 0)
    att = torch.sigmoid(F.conv2d(F.relu(F.conv2d(F.avg_pool2d(feat, feat.size()[2:]), sd["ffm.conv1.weight"])),
                                 sd["ffm.conv2.weight"]))
    out = F.conv2d(cbr(feat * att + feat, "conv_out.conv", 1), sd["conv_out.conv_out.weight"])
    return F.interpolate(out, (h, w), mode="bilinear", align_corners=True)


def random_state(shapes, seed):
    from facegen.models.tiny_eva import _init   # the tiny builder's init (module-like scales)

    gen = torch.Generator().manual_seed(seed)
    return {k: _init(k, s, gen) for k, s in sorted(shapes.items())}


# ----------------------------------------------------------------------------- the released layouts

def test_eva_layout_is_upstreams_tensor_by_tensor():
    from facegen.id.eva import read_eva_state, tower_class

    cfg = EVA02_L14_336
    assert (cfg.heads, cfg.tokens, cfg.hidden_blocks, cfg.mlp_hidden) == (16, 577, (4, 8, 12, 16, 20), int(1024 * 2.6667))
    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in tower_class()(cfg).state_dict().items()}
    expected = eva_visual_shapes(cfg)
    assert own == expected and len(expected) == 8 + 24 * 21
    assert expected["blocks.23.mlp.w3.weight"] == (1024, 2730) and expected["head.weight"] == (768, 1024)
    assert "blocks.0.attn.k_bias" not in expected and "blocks.0.attn.qkv.weight" not in expected
    # a whole-CLIP file (released layout) maps one to one onto the tower, tensor by tensor
    small = dataclasses.replace(TINY_EVA, depth=6)
    tower = {f"visual.{k}": torch.randn(s) for k, s in eva_visual_shapes(small).items()}
    whole = {**tower, "visual.rope.freqs_cos": torch.zeros(16, 64), "visual.blocks.0.attn.rope.freqs_sin": torch.ones(1),
             "text.ln_final.weight": torch.ones(8), "logit_scale": torch.tensor(4.6)}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "EVA02_CLIP_L_336_psz14_s6B.pt"
        torch.save({"module": {f"module.{k}": v for k, v in whole.items()}}, p)
        got = read_eva_state(p)
    assert set(got) == set(eva_visual_shapes(small))
    for k, v in tower.items():
        assert torch.equal(got[k[len("visual."):]], v), k


def test_bisenet_layout_is_facexlibs():
    from facegen.id.bisenet import parser_class

    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in parser_class()(FACEXLIB_BISENET).state_dict().items()}
    assert own == bisenet_shapes(FACEXLIB_BISENET)
    n = sum(math.prod(s) for k, s in own.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert n == 13_300_416      # x 4 bytes + BN stats: the released 53,289,463-byte parsing_bisenet.pth
    assert own["cp.resnet.layer2.0.downsample.0.weight"] == (128, 64, 1, 1) and "cp.resnet.layer1.0.downsample.0.weight" not in own
    assert own["ffm.convblk.conv.weight"] == (256, 256, 1, 1) and own["conv_out16.conv_out.weight"] == (19, 64, 1, 1)


# ----------------------------------------------------------------------------- numerics against upstream

def test_eva_tower_equals_upstreams_computation_on_shared_random_weights():
    from facegen.id.eva import tower_class

    cfg = EvaConfig(image_size=42, patch_size=14, width=128, depth=24, mlp_hidden=100, embed_dim=32)
    sd = random_state(eva_visual_shapes(cfg), 0)
    model = tower_class()(cfg).eval()
    model.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 42, 42, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pooled, hidden = model(x)
        ref_pooled, ref_hidden = upstream_eva(sd, x, heads=2, grid=3)
    assert pooled.shape == (2, 32) and len(hidden) == len(ref_hidden) == 5
    torch.testing.assert_close(pooled, ref_pooled, atol=2e-5, rtol=1e-4)
    for h, r in zip(hidden, ref_hidden):
        assert h.shape == (2, 10, 128)
        torch.testing.assert_close(h, r, atol=2e-5, rtol=1e-4)
    # the rope really rotates (a tower without it differs), and the tiny tower keeps five states
    assert not torch.allclose(model.rope_sin, torch.zeros_like(model.rope_sin))
    assert TINY_EVA.hidden_blocks == (1, 2, 3, 4, 5) and len(TINY_EVA.hidden_blocks) == len(cfg.hidden_blocks)


def test_bisenet_equals_facexlibs_computation_on_shared_random_weights():
    from facegen.id.bisenet import parser_class

    cfg = BiSeNetConfig(widths=(8, 16, 32, 64), blocks=2, arm=16, fuse=32, side=8, classes=19)
    sd = random_state(bisenet_shapes(cfg), 2)
    model = parser_class()(cfg).eval()
    model.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), upstream_bisenet(sd, x), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- strict loading

def test_strict_loading_names_every_bad_tensor(tmp_path):
    from safetensors.torch import save_file

    from facegen.id.bisenet import load_bisenet
    from facegen.id.eva import load_eva
    from facegen.models.tiny_eva import eva_clip_state, parsing_state

    state = eva_clip_state()
    good = tmp_path / "good.pt"
    torch.save(state, good)
    model = load_eva(good)
    assert model.cfg == TINY_EVA
    # a safetensors copy (of the tower alone) loads the same tensors
    save_file({k[len("visual."):]: v.contiguous() for k, v in state.items() if k.startswith("visual.")},
              tmp_path / "eva.safetensors")
    other = load_eva(tmp_path / "eva.safetensors")
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    bad = dict(state)
    del bad["visual.blocks.3.mlp.ffn_ln.bias"], bad["visual.blocks.5.attn.q_bias"]
    bad["visual.blocks.0.attn.k_bias"] = torch.zeros(128)
    bad["visual.blocks.1.attn.proj.weight"] = torch.zeros(128, 64)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InvalidArgumentError) as err:
        load_eva(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "\n" not in msg
    for name in ("blocks.3.mlp.ffn_ln.bias", "blocks.5.attn.q_bias", "blocks.0.attn.k_bias", "blocks.1.attn.proj.weight"):
        assert name in msg
    parse = parsing_state()
    del parse["cp.arm16.bn_atten.running_var"]
    parse["cp.extra.weight"] = torch.zeros(1)
    torch.save(parse, tmp_path / "parse.pth")
    with pytest.raises(InvalidArgumentError, match=r"cp\.arm16\.bn_atten\.running_var.*cp\.extra\.weight"):
        load_bisenet(tmp_path / "parse.pth")
    # older files without BN counters load (facexlib's strict load tolerates them the same way)
    torch.save({k: v for k, v in parsing_state().items() if "num_batches_tracked" not in k}, tmp_path / "old.pth")
    assert load_bisenet(tmp_path / "old.pth") is not None
    # a pickle holding Python objects is refused, not unpickled
    import argparse

    torch.save({"visual.cls_token": argparse.Namespace(payload=1)}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="not only tensors|weights-only"):
        load_eva(tmp_path / "evil.pt")


# ----------------------------------------------------------------------------- the tiny entry end to end

@pytest.fixture(scope="module")
def tiny_pulid():
    from facegen.id.encoders import get_analyzer

    return get_analyzer("pulid-tiny")


def test_tiny_encoder_on_a_real_photo(tiny_pulid, shared_faces, rgb_of):
    from facegen.id.encoders import get_analyzer

    background_labels = (0, 16, 18, 7, 8, 9, 14, 15)     # upstream's bg_label
    border = (132, 133, 135)                             # facexlib's borderValue (135, 133, 132) on BGR
    rgb = rgb_of(shared_faces / "obama_1.jpg")
    e = tiny_pulid.analyze(rgb)[0]
    again = tiny_pulid.analyze(rgb)[0]
    assert e.encoder == "pulid-tiny" and e.dim == 128 + TINY_EVA.embed_dim == 192
    h = e.meta["vit_hidden"]
    assert h.shape == (5, TINY_EVA.tokens, TINY_EVA.width) == (5, 17, 128) and h.dtype == np.float32
    assert np.array_equal(e.vector, again.vector) and np.array_equal(h, again.meta["vit_hidden"])
    # the recogniser part is the dlib entry's own vector of the same face; the EVA part is unit-norm
    dlib = get_analyzer("dlib-resnet-v1").embed(rgb, e.face)
    np.testing.assert_allclose(e.vector[:128], dlib.vector, atol=1e-6)
    assert abs(np.linalg.norm(e.vector[128:]) - 1) < 1e-5
    # upstream's EVA path, step by step: FFHQ-512 warp with facexlib's grey border, BiSeNet on ImageNet-normalised
    # RGB/255, the background labels white and the rest grey, 336 (here 56) bicubic without antialias, CLIP mean/std
    import cv2

    from facegen.faces.align import FFHQ_512

    enc = tiny_pulid.embedder
    m = cv2.estimateAffinePartial2D(e.face.kps, FFHQ_512, method=cv2.LMEDS)[0]    # facexlib align_warp_face
    crop = cv2.warpAffine(rgb, m, (512, 512), borderValue=border)
    np.testing.assert_array_equal(tiny_pulid.align(rgb, e.face).crop, crop)     # the front door's crop is this one
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        labels = enc.parser((x - mean) / std).argmax(dim=1, keepdim=True)
    bg = sum(labels == i for i in background_labels).bool()
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).repeat(1, 3, 1, 1)
    img = torch.where(bg, torch.ones_like(x), grey)
    assert 0.0 < bg.float().mean() < 1.0 and crop[0, 0].tolist() == list(border)
    img = F.interpolate(img, size=(56, 56), mode="bicubic", align_corners=False)
    img = (img - torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)) / \
        torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        cls, hidden = enc.eva(img)
    np.testing.assert_allclose(e.vector[128:], (cls / cls.norm())[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(h, torch.stack(hidden, 1)[0].numpy(), atol=1e-5)
    # another person: another condition
    other = tiny_pulid.analyze(rgb_of(shared_faces / "biden_1.jpg"))[0]
    assert np.abs(other.vector[128:] - e.vector[128:]).max() > 1e-3


def test_the_eva_crop_is_facexlibs_lmeds_warp_even_when_a_point_disagrees(tiny_pulid):
    import cv2

    from facegen.faces.align import FFHQ_512, umeyama
    from facegen.faces.types import Face

    kps = FFHQ_512 * 0.4 + 100
    kps[3] += (30, -25)                                  # one mouth corner far off: LMedS drops it, least squares not
    face = Face(np.array([80, 80, 320, 320], np.float32), kps.astype(np.float32), 0.9)
    rgb = np.random.default_rng(0).integers(0, 256, (420, 420, 3), dtype=np.uint8)
    got = tiny_pulid.align(rgb, face)
    want = cv2.estimateAffinePartial2D(face.kps, FFHQ_512, method=cv2.LMEDS)[0]
    np.testing.assert_allclose(got.matrix, want, atol=1e-9)
    assert np.abs(got.matrix - umeyama(face.kps, FFHQ_512)).max() > 1e-2
    np.testing.assert_array_equal(got.crop, cv2.warpAffine(rgb, want, (512, 512), borderValue=(132, 133, 135)))


def test_parsing_whitens_upstreams_labels_and_greys_the_rest(tiny_pulid, monkeypatch):
    enc = tiny_pulid.embedder
    labels = torch.arange(19).repeat_interleave(2).view(1, 1, 1, 38).expand(1, 1, 4, 38)   # every label, 2 columns each

    class Stub(torch.nn.Module):
        def forward(self, x):
            return F.one_hot(labels[:, 0], 19).permute(0, 3, 1, 2).float()

    monkeypatch.setattr(enc, "parser", Stub())
    crop = np.random.default_rng(0).integers(0, 256, (4, 38, 3), dtype=np.uint8)
    out = enc.features_image([crop])[0]
    x = torch.from_numpy(crop).permute(2, 0, 1).float() / 255
    grey = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    for lab in range(19):
        cols = out[:, :, 2 * lab: 2 * lab + 2]
        if lab in (0, 7, 8, 9, 14, 15, 16, 18):      # background, ears, earring, neck, necklace, cloth, hat
            assert torch.all(cols == 1), lab
        else:
            torch.testing.assert_close(cols, grey[:, 2 * lab: 2 * lab + 2].expand(3, -1, -1))


def test_embedding_aligned_crops_is_refused_in_one_line(tiny_pulid):
    with pytest.raises(InvalidArgumentError, match="whole photos"):
        tiny_pulid.embedder.embed_crops([np.zeros((512, 512, 3), np.uint8)])


def test_real_entry_names_its_files_and_licences(tmp_path):
    from facegen.errors import ModelNotFoundError
    from facegen.id.encoders import get_analyzer, missing_files
    from facegen.id.registry import get_encoder_spec
    from facegen.paths import ModelAccess

    spec = get_encoder_spec("pulid-antelopev2-eva02")
    assert spec.dim == 1280 and spec.recogniser == "antelopev2-glintr100" and not spec.commercial_use
    for words in ("insightface", "EVA-CLIP", "MIT", "CelebAMask-HQ"):
        assert words in spec.licence
    missing = missing_files(spec, ModelAccess(tmp_path))
    assert any("EVA02_CLIP_L_336_psz14_s6B" in m for m in missing)
    assert any("parsing_bisenet.pth" in m for m in missing) and "antelopev2/glintr100.onnx" in missing
    assert missing_files(get_encoder_spec("pulid-tiny"), ModelAccess(tmp_path)) == []
    with pytest.raises(Exception, match="licen"):
        get_analyzer("pulid-antelopev2-eva02", ModelAccess(tmp_path))
    with pytest.raises(ModelNotFoundError, match="EVA02_CLIP_L_336_psz14_s6B"):
        get_analyzer("pulid-antelopev2-eva02", ModelAccess(tmp_path, accept_license=True))


def test_real_entry_wires_antelopev2_and_the_eva_path(tmp_path, shared_faces, rgb_of):
    """The real entry's front door on its own file names (tiny-config weights in the released
    layouts, a stub glintr100 session): the raw ArcFace-112 vector, then the normalised EVA CLS."""
    from types import SimpleNamespace

    from facegen.faces.align import warp_face
    from facegen.id.encoders import build_analyzer, get_analyzer
    from facegen.id.registry import get_encoder_spec
    from facegen.models.tiny_eva import eva_clip_state, parsing_state
    from facegen.paths import ModelAccess

    (tmp_path / "antelopev2").mkdir()
    (tmp_path / "antelopev2" / "glintr100.onnx").write_bytes(b"stub")
    (tmp_path / "QuanSun" / "EVA-CLIP").mkdir(parents=True)
    torch.save(eva_clip_state(), tmp_path / "QuanSun" / "EVA-CLIP" / "EVA02_CLIP_L_336_psz14_s6B.pt")
    (tmp_path / "facexlib").mkdir()
    torch.save(parsing_state(), tmp_path / "facexlib" / "parsing_bisenet.pth")
    fed = []

    class Session:
        def get_inputs(self):
            return [SimpleNamespace(name="input.1", shape=[None, 3, 112, 112])]

        def run(self, _names, feeds):
            fed.append(feeds["input.1"])
            return [feeds["input.1"].reshape(len(feeds["input.1"]), -1)[:, :512] * 40.0]     # a raw-scale vector

    spec = get_encoder_spec("pulid-antelopev2-eva02")
    access = ModelAccess(tmp_path, accept_license=True)
    rgb = rgb_of(shared_faces / "obama_1.jpg")
    face = get_analyzer("pulid-tiny").analyze(rgb)[0].face            # any detector's five points
    real = build_analyzer(spec, access, session_factory=lambda p, providers, **kw: Session())
    with pytest.raises(InvalidArgumentError, match="makes 1280-D vectors, but its networks gave 576"):
        real.embed(rgb, face)                                          # a tiny EVA file is not the entry's
    fed.clear()
    real = build_analyzer(dataclasses.replace(spec, dim=512 + 64), access,
                          session_factory=lambda p, providers, **kw: Session())
    e = real.embed(rgb, face)
    crop, _ = warp_face(rgb, face.kps, 112, "arcface")
    np.testing.assert_allclose(fed[0][0], (crop.transpose(2, 0, 1) - 127.5) / 127.5, atol=1e-6)
    assert e.encoder == "pulid-antelopev2-eva02" and e.dim == 512 + 64     # this file's EVA gives 64 (the real: 768)
    np.testing.assert_allclose(e.vector[:512], fed[0].reshape(1, -1)[0, :512] * 40.0, rtol=1e-6)   # raw, not normalised
    assert abs(np.linalg.norm(e.vector[512:]) - 1) < 1e-5 and e.meta["vit_hidden"].shape == (5, 17, 128)


# ----------------------------------------------------------------------------- the encoder contract

def test_pulid_embeddings_and_other_families_refuse_each_other():
    from facegen.adapters.registry import adapter_for
    from facegen.models.registry import get_preset

    pulid = IDEmbedding(np.ones(1280, np.float32), "pulid-antelopev2-eva02",
                        meta={"vit_hidden": np.zeros((5, 577, 1024), np.float32)})
    instantid = adapter_for(get_preset("instantid"))          # antelopev2's raw vector, another family
    with pytest.raises(EncoderMismatchError, match="pulid-antelopev2-eva02"):
        instantid.check_embedding(pulid)
    as_pulid = dataclasses.replace(get_preset("instantid"), encoder="pulid-antelopev2-eva02", id_dim=1280)
    with pytest.raises(EncoderMismatchError, match="antelopev2-glintr100"):
        adapter_for(as_pulid).check_embedding(IDEmbedding(np.ones(512, np.float32), "antelopev2-glintr100"))
    adapter_for(as_pulid).check_embedding(pulid)               # its own encoder's embedding passes


def test_the_judge_of_a_pulid_generation_is_not_its_own_recogniser(tmp_path):
    from facegen.metrics import choose_judge
    from facegen.paths import ModelAccess

    for rel in ("antelopev2/glintr100.onnx", "buffalo_l/w600k_r50.onnx"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"stub")
    access = ModelAccess(tmp_path, accept_license=True)
    assert choose_judge("buffalo_l-w600k-r50", access) == "antelopev2-glintr100"
    assert choose_judge("pulid-antelopev2-eva02", access) == "buffalo_l-w600k-r50"     # not glintr100 again


# ----------------------------------------------------------------------------- several photos, saved files

def _fake(seed: int, tokens: int = 17) -> IDEmbedding:
    rng = np.random.default_rng(seed)
    return IDEmbedding(rng.normal(size=192).astype(np.float32), "pulid-tiny",
                       meta={"vit_hidden": rng.normal(size=(5, tokens, 128)).astype(np.float32)})


def test_mean_concatenates_token_states_as_upstream_v1_1():
    a, b = _fake(0), _fake(1)
    m = mean_embedding([a, b])
    assert m.meta["vit_hidden"].shape == (5, 34, 128)
    np.testing.assert_array_equal(m.meta["vit_hidden"][:, :17], a.meta["vit_hidden"])
    np.testing.assert_array_equal(m.meta["id_conds"], np.stack([a.vector, b.vector]))
    mm = mean_embedding([m, _fake(2)])                          # a mean of means keeps every photo
    assert mm.meta["vit_hidden"].shape == (5, 51, 128) and mm.meta["id_conds"].shape == (3, 192)
    assert "vit_hidden" not in mean_embedding([IDEmbedding(np.ones(4), "dlib-resnet-v1")] * 2).meta
    with pytest.raises(InvalidArgumentError, match="some of these embeddings"):
        mean_embedding([a, IDEmbedding(np.ones(192), "pulid-tiny")])


def test_saved_embeddings_keep_token_states(tmp_path):
    from facegen.id.saved import load_id_embeds, save_id_embeds

    embs = [_fake(0), mean_embedding([_fake(1), _fake(2)])]
    npy, side = save_id_embeds(tmp_path / "me.npy", embs)
    assert (tmp_path / "me.vit_hidden.npz").is_file()
    back = load_id_embeds(npy)
    for e, b in zip(embs, back):
        np.testing.assert_array_equal(e.vector, b.vector)
        np.testing.assert_array_equal(e.meta["vit_hidden"], b.meta["vit_hidden"])
    np.testing.assert_array_equal(back[1].meta["id_conds"], embs[1].meta["id_conds"])
    assert "id_conds" not in back[0].meta
    again = mean_embedding(back)
    assert again.meta["vit_hidden"].shape == (5, 17 * 3, 128)
    # a PuLID save without its states is refused on load, naming how to redo it
    import json

    meta = json.loads(side.read_text())
    del meta["vit_hidden"]
    side.write_text(json.dumps(meta))
    with pytest.raises(InvalidArgumentError, match="without the EVA hidden states.*--encoder pulid-tiny"):
        load_id_embeds(npy)
    meta["vit_hidden"] = "../elsewhere.vit_hidden.npz"
    side.write_text(json.dumps(meta))
    with pytest.raises(InvalidArgumentError, match="beside it"):
        load_id_embeds(npy)
