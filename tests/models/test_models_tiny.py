"""Model registry, resolution and the tiny checkpoints (layouts and strict loading).

Key names and shape relations are asserted from ../shared/reference/compat.md (2.2-2.4),
written out here independently of the code that generates them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from facegen.errors import (
    InvalidArgumentError,
    LicenseNotAcceptedError,
    ModelNotFoundError,
)
from facegen.models import (
    get_preset,
    list_presets,
    missing_files,
    preset_status,
    resolve_preset,
)
from facegen.models.tiny import ensure_tiny
from facegen.paths import ModelAccess

TINY = ("tiny", "tiny-faceid", "tiny-faceid-sdxl", "tiny-instantid")
REAL = ("arc2face", "arc2face-lcm", "faceid-sd15", "faceid-sdxl", "instantid", "infiniteyou", "infiniteyou-sim",
        "pulid-sdxl", "pulid-flux")


def _bin(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _safetensor_keys(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


@pytest.fixture(scope="module")
def roots() -> dict[str, object]:
    return {name: resolve_preset(get_preset(name)) for name in TINY}


# ----------------------------------------------------------------------------- registry

def test_presets_follow_compat_defaults():
    a2f = get_preset("arc2face")
    assert (a2f.defaults.scheduler, a2f.defaults.steps, a2f.defaults.guidance) == ("dpm++", 25, 3.0)
    assert a2f.encoder == "arc2face-arcface" and a2f.normalise
    assert a2f.component("unet").repo == "FoivosPar/Arc2Face"
    assert "encoder/pytorch_model.bin" in a2f.component("text_encoder").files
    lcm = get_preset("arc2face-lcm")
    assert (lcm.defaults.scheduler, lcm.defaults.guidance) == ("lcm", 1.0) and 2 <= lcm.defaults.steps <= 4
    iid = get_preset("instantid")
    assert (iid.defaults.adapter_scale, iid.defaults.controlnet_scale, iid.defaults.steps, iid.defaults.guidance) \
        == (0.8, 0.8, 30, 5.0)
    assert iid.encoder == "antelopev2-glintr100" and not iid.normalise
    assert iid.component("controlnet").files == ("ControlNetModel/config.json",
                                                 "ControlNetModel/diffusion_pytorch_model.safetensors")
    for name in ("faceid-sd15", "faceid-sdxl"):
        p = get_preset(name)
        assert p.encoder == "buffalo_l-w600k-r50" and p.normalise
        assert p.component("ip_adapter").files == (f"ip-adapter-faceid_{p.base}.bin",)
    for name in REAL:
        assert get_preset(name).needs_licence, name
    for name in TINY:
        p = get_preset(name)
        assert p.tiny and not p.needs_licence and p.encoder == "dlib-resnet-v1" and p.id_dim == 128
    assert set(TINY) | set(REAL) <= set(list_presets())
    assert set(list_presets(include_tiny=False)) == set(REAL)


def test_unknown_preset_names_the_choices():
    with pytest.raises(InvalidArgumentError, match="tiny-faceid"):
        get_preset("tiny-face")


# ----------------------------------------------------------------------------- resolution

def test_real_preset_offline_without_files_lists_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_preset(get_preset("arc2face"), ModelAccess(tmp_path))
    err = exc.value
    assert "FoivosPar/Arc2Face/encoder/pytorch_model.bin" in err.files
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5/vae/diffusion_pytorch_model.safetensors" in err.files
    assert err.folder == str(tmp_path)
    assert "\n" not in str(err) and "HF_HUB_OFFLINE" in str(err)


def test_local_folder_is_used_first(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    preset = get_preset("instantid")
    for repo, path in preset.all_files()[:-1]:
        (tmp_path / repo / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / repo / path).write_bytes(b"x")
    with pytest.raises(ModelNotFoundError) as exc:  # exactly the one file left out is reported
        resolve_preset(preset, ModelAccess(tmp_path))
    assert exc.value.files == ["InstantX/InstantID/ip-adapter.bin"]
    (tmp_path / "InstantX/InstantID/ip-adapter.bin").write_bytes(b"x")
    resolved = resolve_preset(preset, ModelAccess(tmp_path))
    assert resolved.file("ip_adapter") == tmp_path / "InstantX/InstantID/ip-adapter.bin"
    assert resolved.folder("controlnet") == tmp_path / "InstantX/InstantID/ControlNetModel"
    assert preset_status(ModelAccess(tmp_path))["instantid"]["ready"]
    assert not preset_status(ModelAccess(tmp_path))["arc2face"]["ready"]


def test_real_preset_needs_licence_before_anything(tmp_path, monkeypatch):
    from facegen.pipelines.generation import IDGenerationPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FACEGEN_ACCEPT_NONCOMMERCIAL", raising=False)
    with pytest.raises(LicenseNotAcceptedError, match="non-commercial"):
        IDGenerationPipeline.from_preset("faceid-sd15", access=ModelAccess(tmp_path))
    with pytest.raises(ModelNotFoundError, match="h94/IP-Adapter-FaceID/ip-adapter-faceid_sd15.bin"):
        IDGenerationPipeline.from_preset("faceid-sd15", access=ModelAccess(tmp_path, accept_license=True))


# ----------------------------------------------------------------------------- tiny layouts

def test_tiny_is_seeded_identical_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        ensure_tiny("tiny", root=root)
        ensure_tiny("tiny-instantid", root=root)

    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    da, db = digest(a), digest(b)
    assert da == db and len(da) > 30


def test_tiny_layouts_match_the_released_file_lists(roots):
    for name, resolved in roots.items():
        assert missing_files(resolved.preset, resolved.root) == [], name
    sd15 = roots["tiny"].repo_dir("base")
    index = json.loads((sd15 / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    sched = json.loads((sd15 / "scheduler/scheduler_config.json").read_text())
    assert sched["_class_name"] == "PNDMScheduler" and sched["beta_schedule"] == "scaled_linear"
    a2f = roots["tiny"].repo_dir("unet")
    assert (a2f / "arc2face/diffusion_pytorch_model.safetensors").is_file()
    assert (a2f / "encoder/pytorch_model.bin").is_file() and not (a2f / "encoder/model.safetensors").exists()
    sdxl = roots["tiny-instantid"].repo_dir("base")
    assert json.loads((sdxl / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLPipeline"
    assert json.loads((sdxl / "tokenizer_2/special_tokens_map.json").read_text())["pad_token"] == "!"


def test_tiny_tokenizer_has_the_arc2face_prompt_words(roots):
    from facegen.models.loading import load_tokenizer

    tok = load_tokenizer(roots["tiny"].repo_dir("base") / "tokenizer")
    assert len(tok.encode("id", add_special_tokens=False)) == 1
    ids = tok("photo of a id person").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "photo</w>", "of</w>", "a</w>", "id</w>",
                                              "person</w>", "<|endoftext|>"]
    assert tok.model_max_length == 77
    # anything else still tokenises (byte-level fallback), nothing is unknown
    odd = tok("Zürich, 1999!").input_ids
    assert len(odd) > 3


def test_text_encoders_use_the_released_key_prefix_and_load_strictly(roots):
    from transformers import CLIPTextModel

    from facegen.models.loading import load_text_encoder, load_text_encoder_pickle

    te_dir = roots["tiny"].repo_dir("base") / "text_encoder"
    keys = _safetensor_keys(te_dir / "model.safetensors")
    assert keys and all(k.startswith("text_model.") for k in keys)
    model = load_text_encoder(CLIPTextModel, te_dir, torch.float32)
    assert len(model.state_dict()) == len(keys)
    enc_dir = roots["tiny"].folder("text_encoder")
    state = _bin(enc_dir / "pytorch_model.bin")
    assert all(k.startswith("text_model.") for k in state)
    enc = load_text_encoder_pickle(enc_dir, torch.float32)
    assert enc.config.hidden_size >= 128  # the 128-D tiny ID vector is zero-padded, never cut
    row = state["text_model.embeddings.token_embedding.weight"]
    assert torch.equal(enc.get_input_embeddings().weight, row)


def test_diffusers_components_load_strictly(roots):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from facegen.models.loading import load_diffusers_model

    folders = [(UNet2DConditionModel, roots["tiny"].folder("unet")),
               (UNet2DConditionModel, roots["tiny"].repo_dir("base") / "unet"),
               (AutoencoderKL, roots["tiny"].repo_dir("base") / "vae"),
               (UNet2DConditionModel, roots["tiny-instantid"].repo_dir("base") / "unet"),
               (ControlNetModel, roots["tiny-instantid"].folder("controlnet"))]
    for cls, folder in folders:
        model = load_diffusers_model(cls, folder, torch.float32)
        assert set(model.state_dict()) == _safetensor_keys(folder / "diffusion_pytorch_model.safetensors"), folder


def test_truncated_component_is_refused(roots, tmp_path):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file, save_file

    from facegen.models.loading import load_diffusers_model

    src = roots["tiny"].folder("unet")
    dst = tmp_path / "unet"
    dst.mkdir()
    (dst / "config.json").write_bytes((src / "config.json").read_bytes())
    state = load_file(str(src / "diffusion_pytorch_model.safetensors"))
    state.pop(min(state))
    save_file(state, str(dst / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(Exception, match="missing"):
        load_diffusers_model(UNet2DConditionModel, dst, torch.float32)


# ----------------------------------------------------------------------------- adapter checkpoints

def _attn_names(unet) -> list[str]:
    return list(unet.attn_processors.keys())


def test_faceid_bin_keys_follow_compat(roots):
    from diffusers import UNet2DConditionModel

    for name in ("tiny-faceid", "tiny-faceid-sdxl"):
        resolved = roots[name]
        state = _bin(resolved.file("ip_adapter"))
        assert set(state) == {"image_proj", "ip_adapter"}
        proj = state["image_proj"]
        unet = UNet2DConditionModel.from_pretrained(resolved.repo_dir("base") / "unet")
        cross = unet.config.cross_attention_dim
        assert set(proj) == {"proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias", "norm.weight", "norm.bias"}
        assert proj["proj.0.weight"].shape == (2 * 128, 128)          # 1024 x 512 released
        assert proj["proj.2.weight"].shape == (4 * cross, 2 * 128)    # 4 tokens x cross dim
        assert proj["norm.weight"].shape == (cross,)
        ip = state["ip_adapter"]
        names = _attn_names(unet)
        cross_ids = [i for i, n in enumerate(names) if n.endswith("attn2.processor")]
        assert cross_ids and all(i % 2 == 1 for i in cross_ids)
        assert {k.split(".")[0] for k in ip if "_ip." in k} == {str(i) for i in cross_ids}
        for k in range(len(names)):  # LoRA on every processor, self and cross
            for proj_name in ("q", "k", "v", "out"):
                down, up = ip[f"{k}.to_{proj_name}_lora.down.weight"], ip[f"{k}.to_{proj_name}_lora.up.weight"]
                assert down.shape[0] == up.shape[1]  # rank
        k = cross_ids[0]
        assert ip[f"{k}.to_k_lora.down.weight"].shape[1] == cross   # cross-attn k/v read the text width
        assert ip[f"{k}.to_k_ip.weight"].shape[1] == cross
        assert len(ip) == 8 * len(names) + 2 * len(cross_ids)


def test_instantid_bin_keys_follow_compat(roots):
    from diffusers import UNet2DConditionModel

    resolved = roots["tiny-instantid"]
    state = _bin(resolved.file("ip_adapter"))
    proj = state["image_proj"]
    unet = UNet2DConditionModel.from_pretrained(resolved.repo_dir("base") / "unet")
    assert proj["latents"].shape[:2] == (1, 16)
    dim = proj["latents"].shape[2]
    assert proj["proj_in.weight"].shape == (dim, 128)
    assert proj["proj_out.weight"].shape == (unet.config.cross_attention_dim, dim)
    assert proj["norm_out.weight"].shape == (unet.config.cross_attention_dim,)
    expected = {"latents", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias",
                "norm_out.weight", "norm_out.bias"}
    for i in range(4):
        expected |= {f"layers.{i}.0.norm1.weight", f"layers.{i}.0.norm1.bias", f"layers.{i}.0.norm2.weight",
                     f"layers.{i}.0.norm2.bias", f"layers.{i}.0.to_q.weight", f"layers.{i}.0.to_kv.weight",
                     f"layers.{i}.0.to_out.weight", f"layers.{i}.1.0.weight", f"layers.{i}.1.0.bias",
                     f"layers.{i}.1.1.weight", f"layers.{i}.1.3.weight"}
        assert proj[f"layers.{i}.0.to_kv.weight"].shape == (2 * dim, dim)
        assert proj[f"layers.{i}.1.1.weight"].shape == (4 * dim, dim)
    assert set(proj) == expected
    ip = state["ip_adapter"]
    ids = sorted({int(k.split(".")[0]) for k in ip})
    names = _attn_names(unet)
    assert ids == [i for i, n in enumerate(names) if n.endswith("attn2.processor")]
    assert ids == list(range(1, 2 * len(ids), 2))   # 1, 3, 5, ... (139 for the released SDXL)
    assert set(ip) == {f"{i}.to_{kv}_ip.weight" for i in ids for kv in ("k", "v")}


def test_adapter_weights_land_in_the_pipeline_unchanged():
    from diffusers.models.embeddings import (
        IPAdapterFaceIDImageProjection,
        IPAdapterPlusImageProjection,
    )

    from facegen.pipelines.generation import IDGenerationPipeline

    fid = IDGenerationPipeline.from_preset("tiny-faceid", device="cpu")
    state = _bin(resolve_preset(get_preset("tiny-faceid")).file("ip_adapter"))
    layer = fid.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(layer, IPAdapterFaceIDImageProjection) and layer.num_tokens == 4
    assert torch.equal(layer.ff.net[0].proj.weight, state["image_proj"]["proj.0.weight"])
    names = _attn_names(fid.pipe.unet)
    first_cross = next(i for i, n in enumerate(names) if n.endswith("attn2.processor"))
    proc = fid.pipe.unet.attn_processors[names[first_cross]]
    assert torch.equal(proc.to_k_ip[0].weight, state["ip_adapter"][f"{first_cross}.to_k_ip.weight"])
    assert "faceid_0" in fid.pipe.unet.peft_config  # the LoRA inside the .bin is active

    iid = IDGenerationPipeline.from_preset("tiny-instantid", device="cpu")
    state = _bin(resolve_preset(get_preset("tiny-instantid")).file("ip_adapter"))
    layer = iid.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(layer, IPAdapterPlusImageProjection)
    assert torch.equal(layer.latents, state["image_proj"]["latents"])
    assert layer.latents.shape[1] == 16


def test_wrong_adapter_checkpoint_is_refused(roots):
    from diffusers import UNet2DConditionModel

    from facegen.adapters.instantid import check_instantid_checkpoint
    from facegen.adapters.ip_adapter_faceid import check_faceid_checkpoint

    sd15_unet = UNet2DConditionModel.from_pretrained(roots["tiny-faceid"].repo_dir("base") / "unet")
    sdxl_unet = UNet2DConditionModel.from_pretrained(roots["tiny-instantid"].repo_dir("base") / "unet")
    sdxl_faceid = _bin(roots["tiny-faceid-sdxl"].file("ip_adapter"))
    with pytest.raises(InvalidArgumentError, match="does not match"):
        check_faceid_checkpoint(sdxl_faceid, sd15_unet, 128, "ip-adapter-faceid_sdxl.bin")
    good = _bin(roots["tiny-faceid"].file("ip_adapter"))
    assert check_faceid_checkpoint(good, sd15_unet, 128, "x") == 4
    del good["ip_adapter"]["1.to_v_ip.weight"]
    with pytest.raises(InvalidArgumentError, match="1.to_v_ip.weight"):
        check_faceid_checkpoint(good, sd15_unet, 128, "x")
    iid = _bin(roots["tiny-instantid"].file("ip_adapter"))
    with pytest.raises(InvalidArgumentError, match="Resampler"):
        check_instantid_checkpoint(sdxl_faceid, sdxl_unet, 128, "x")
    check_instantid_checkpoint(iid, sdxl_unet, 128, "ip-adapter.bin")
    with pytest.raises(InvalidArgumentError, match="image_proj"):
        check_instantid_checkpoint(iid, sdxl_unet, 512, "ip-adapter.bin")  # a 512-D release vs 128-D tiny


def test_arc2face_encoder_pickle_is_checked_key_by_key(roots, tmp_path):
    from facegen.models.loading import load_text_encoder_pickle

    src = roots["tiny"].folder("text_encoder")
    state = _bin(src / "pytorch_model.bin")
    dst = tmp_path / "encoder"
    dst.mkdir()
    (dst / "config.json").write_bytes((src / "config.json").read_bytes())
    old = dict(state, **{"text_model.embeddings.position_ids": torch.arange(77)[None]})
    torch.save(old, dst / "pytorch_model.bin")  # exports of older transformers kept this buffer
    load_text_encoder_pickle(dst, torch.float32)
    state.pop("text_model.final_layer_norm.bias")
    torch.save(state, dst / "pytorch_model.bin")
    with pytest.raises(InvalidArgumentError, match="final_layer_norm.bias"):
        load_text_encoder_pickle(dst, torch.float32)


def test_every_scheduler_name_builds_from_the_released_config(roots):
    from facegen.models.loading import SCHEDULERS, load_scheduler_config, make_scheduler

    config = load_scheduler_config(roots["tiny"].repo_dir("base") / "scheduler")
    for name in SCHEDULERS:
        sched = make_scheduler(name, config)
        assert sched.config.beta_schedule == "scaled_linear", name
    with pytest.raises(InvalidArgumentError, match="unknown scheduler"):
        make_scheduler("fast", config)
