"""Tiny random-weight checkpoints written in the released on-disk layouts.

``ensure_tiny(preset)`` writes (once) the repositories a tiny preset needs under
``facegen.paths.cache_dir()/tiny/<version-hash>/`` in the hub layout, e.g.
``facegen-tiny/stable-diffusion-v1-5/{model_index.json, unet/, vae/, text_encoder/, tokenizer/,
scheduler/}``, ``facegen-tiny/Arc2Face/{arc2face/, encoder/config.json+pytorch_model.bin}``,
``facegen-tiny/IP-Adapter-FaceID/ip-adapter-faceid_sd15.bin``,
``facegen-tiny/InstantID/{ControlNetModel/, ip-adapter.bin}``.  The presets then load them with
the very same code as the real weights.  Weights are seeded per component: identical bytes
on every build.  The ID contract of tiny adapters is the offline 128-D dlib descriptor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from facegen.models import registry as R
from facegen.models.checkpoints import (
    faceid_image_proj_shapes,
    ip_adapter_shapes,
    resampler_shapes,
)
from facegen.models.loading import quiet_loading
from facegen.models.plugins import load_family_plugins
from facegen.models.tiny_tokenizer import WORDS, build_vocab, write_tokenizer
from facegen.paths import cache_dir

logger = logging.getLogger(__name__)

TINY_FORMAT_VERSION = 1

# ----------------------------------------------------------------------------- configs

SD15_TEXT_HIDDEN = 160          # >= TINY_ID_DIM so Arc2Face's zero-padding is exercised (128 -> 160)
SDXL_TEXT_HIDDEN = 32
FACEID_LORA_RANK = 4
FACEID_HIDDEN_MULT = 2          # proj.0 width = 2 * id_dim, as in the released .bin (512 -> 1024)
RESAMPLER_DIM = 128             # released: 1280 (20 heads of 64)
RESAMPLER_QUERIES = 16
LCM_LORA_RANK = 4               # released lcm-lora-sdv1-5: rank 64
#: the UNet modules the LCM-LoRA distillation script targets (diffusers
#: examples/consistency_distillation, default --lora_target_modules): attention, transformer
#: projections and feed-forward, resnet convolutions and time embeddings, down/upsamplers
LCM_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")

# attention only at the lower resolution keeps a 64x64 image at ~0.1 s per step on one CPU core
SD15_UNET: dict[str, Any] = dict(
    sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=SD15_TEXT_HIDDEN, attention_head_dim=8, norm_num_groups=32,
)

SDXL_UNET: dict[str, Any] = dict(
    sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
    addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=SDXL_TEXT_HIDDEN + 6 * 8,
    cross_attention_dim=2 * SDXL_TEXT_HIDDEN, norm_num_groups=32,
)

CONTROLNET: dict[str, Any] = dict(
    in_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    conditioning_embedding_out_channels=(16, 32),
    attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
    addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=SDXL_TEXT_HIDDEN + 6 * 8,
    cross_attention_dim=2 * SDXL_TEXT_HIDDEN, norm_num_groups=32,
)


def _vae(scaling_factor: float, force_upcast: bool) -> dict[str, Any]:
    return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                scaling_factor=scaling_factor, force_upcast=force_upcast)


# scheduler_config.json as the released SD1.5 / SDXL repositories ship it (extra keys included)
SCHEDULER_COMMON: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    steps_offset=1, clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True, trained_betas=None)
SD15_SCHEDULER: dict[str, Any] = {"_class_name": "PNDMScheduler", **SCHEDULER_COMMON}
SDXL_SCHEDULER: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler", **SCHEDULER_COMMON, "interpolation_type": "linear",
    "prediction_type": "epsilon", "sample_max_value": 1.0, "timestep_spacing": "leading",
    "use_karras_sigmas": False}

def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _text_config(hidden: int, projection_dim: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    vocab, _ = build_vocab()
    # bos/eos/pad ids as in the released SD configs (0/2/1: pooled output = argmax of ids,
    # which is the end-of-text token, the highest id, as in CLIP's own vocabulary)
    kw = dict(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
              num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
              hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1)
    if projection_dim is not None:
        kw["projection_dim"] = projection_dim
    return CLIPTextConfig(**kw)


@contextlib.contextmanager
def seeded(name: str) -> Iterator[Any]:
    """Seed torch from a component name without touching the caller's RNG state."""
    import torch

    seed = int.from_bytes(hashlib.sha256(f"facegen-tiny/{name}".encode()).digest()[:8], "little") % (2**63)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        yield gen


def _legacy_text_state(model: Any) -> dict[str, Any]:
    """State dict with the ``text_model.`` prefix the released checkpoints use."""
    out = {}
    for k, v in model.state_dict().items():
        if not k.startswith(("text_model.", "text_projection")):
            k = "text_model." + k
        out[k] = v.detach().contiguous().clone()
    return out


def save_text_encoder(folder: Path, name: str, hidden: int, with_projection: bool,
                       as_pickle: bool = False) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cfg = _text_config(hidden, projection_dim=hidden if with_projection else None)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    cfg.architectures = [cls.__name__]
    with seeded(name):
        model = cls(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(folder)
    state = _legacy_text_state(model)
    if as_pickle:  # Arc2Face ships encoder/pytorch_model.bin (a torch pickle of tensors only)
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _save_diffusers(model: Any, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)


def tiny_unet(config: dict[str, Any], name: str) -> Any:
    from diffusers import UNet2DConditionModel

    with seeded(name):
        return UNet2DConditionModel(**config)


def _random_tensor(shape: tuple[int, ...], gen: Any, key: str) -> Any:
    """Init close to the module defaults: unit LayerNorm gains, zero-ish biases, 1/sqrt(fan-in) weights."""
    import torch

    last = key.rsplit(".", 1)[-1]
    if len(shape) == 1:
        base = torch.ones(shape) if ("norm" in key and last == "weight") or key.endswith(".1.0.weight") \
            else torch.zeros(shape)
        return base + 0.02 * torch.randn(shape, generator=gen)
    scale = 0.1 if "_lora." in key else 1.0   # keep the LoRA a perturbation of the base UNet
    return scale * torch.randn(shape, generator=gen) / shape[-1] ** 0.5


def random_state(shapes: dict[str, tuple[int, ...]], gen: Any) -> dict[str, Any]:
    return {k: _random_tensor(s, gen, k) for k, s in sorted(shapes.items())}


# ----------------------------------------------------------------------------- repo builders

def model_index(cls: str, components: dict[str, list[Any]]) -> dict[str, Any]:
    import diffusers

    return {"_class_name": cls, "_diffusers_version": diffusers.__version__, **components}


def _build_sd15(dst: Path) -> None:
    from diffusers import AutoencoderKL

    write_json(dst / "model_index.json", model_index("StableDiffusionPipeline", {
        "feature_extractor": [None, None], "image_encoder": [None, None],
        "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]}))
    write_json(dst / "scheduler" / "scheduler_config.json", SD15_SCHEDULER)
    write_tokenizer(dst / "tokenizer")
    save_text_encoder(dst / "text_encoder", "sd15/text_encoder", SD15_TEXT_HIDDEN, with_projection=False)
    _save_diffusers(tiny_unet(SD15_UNET, "sd15/unet"), dst / "unet")
    with seeded("sd15/vae"):
        vae = AutoencoderKL(**_vae(0.18215, force_upcast=True))
    _save_diffusers(vae, dst / "vae")


def _build_sdxl(dst: Path) -> None:
    from diffusers import AutoencoderKL

    write_json(dst / "model_index.json", model_index("StableDiffusionXLPipeline", {
        "feature_extractor": [None, None], "image_encoder": [None, None],
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}))
    write_json(dst / "scheduler" / "scheduler_config.json", SDXL_SCHEDULER)
    write_tokenizer(dst / "tokenizer")
    write_tokenizer(dst / "tokenizer_2", pad_token="!")
    save_text_encoder(dst / "text_encoder", "sdxl/text_encoder", SDXL_TEXT_HIDDEN, with_projection=False)
    save_text_encoder(dst / "text_encoder_2", "sdxl/text_encoder_2", SDXL_TEXT_HIDDEN, with_projection=True)
    _save_diffusers(tiny_unet(SDXL_UNET, "sdxl/unet"), dst / "unet")
    with seeded("sdxl/vae"):
        vae = AutoencoderKL(**_vae(0.13025, force_upcast=True))
    _save_diffusers(vae, dst / "vae")


def _build_arc2face(dst: Path) -> None:
    _save_diffusers(tiny_unet(SD15_UNET, "arc2face/unet"), dst / "arc2face")
    save_text_encoder(dst / "encoder", "arc2face/encoder", SD15_TEXT_HIDDEN, with_projection=False,
                       as_pickle=True)


def faceid_state_dict(base: str) -> dict[str, dict[str, Any]]:
    """A FaceID ``.bin`` payload for the tiny ``base`` ('sd15'|'sdxl') UNet."""
    unet = tiny_unet(SD15_UNET if base == "sd15" else SDXL_UNET, f"{base}/unet-structure")
    cross = unet.config.cross_attention_dim
    with seeded(f"faceid/{base}") as gen:
        image_proj = random_state(faceid_image_proj_shapes(
            R.TINY_ID_DIM, cross, hidden=FACEID_HIDDEN_MULT * R.TINY_ID_DIM), gen)
        ip_adapter = random_state(ip_adapter_shapes(unet, lora_rank=FACEID_LORA_RANK), gen)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def instantid_state_dict() -> dict[str, dict[str, Any]]:
    """An InstantID ``ip-adapter.bin`` payload (Resampler image_proj + IP attention)."""
    unet = tiny_unet(SDXL_UNET, "sdxl/unet-structure")
    with seeded("instantid/ip-adapter") as gen:
        image_proj = random_state(resampler_shapes(
            embedding_dim=R.TINY_ID_DIM, dim=RESAMPLER_DIM, output_dim=unet.config.cross_attention_dim,
            num_queries=RESAMPLER_QUERIES), gen)
        ip_adapter = random_state(ip_adapter_shapes(unet, lora_rank=None), gen)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def lcm_lora_state_dict() -> dict[str, Any]:
    """An LCM-LoRA for the tiny SD1.5/Arc2Face UNet in the layout of
    ``latent-consistency/lcm-lora-sdv1-5/pytorch_lora_weights.safetensors``: kohya-style keys on
    diffusers module names, ``lora_unet_<module path, dots as underscores>.{lora_down.weight,
    lora_up.weight, alpha}`` (down ``[r, in(, k, k)]``, up ``[out, r(, 1, 1)]``, alpha a scalar),
    which diffusers' ``load_lora_weights`` converts to PEFT layers."""
    import torch

    unet = tiny_unet(SD15_UNET, "sd15/unet-structure")
    state: dict[str, Any] = {}
    with seeded("lcm-lora/sd15") as gen:
        for name, mod in unet.named_modules():
            if not name.endswith(LCM_LORA_TARGETS) or not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                continue
            key = "lora_unet_" + name.replace(".", "_")
            r = LCM_LORA_RANK
            if isinstance(mod, torch.nn.Linear):
                down = torch.randn(r, mod.in_features, generator=gen) / mod.in_features ** 0.5
                up = torch.randn(mod.out_features, r, generator=gen) / r ** 0.5
            else:
                k = mod.kernel_size
                fan_in = mod.in_channels * k[0] * k[1]
                down = torch.randn(r, mod.in_channels, *k, generator=gen) / fan_in ** 0.5
                up = torch.randn(mod.out_channels, r, 1, 1, generator=gen) / r ** 0.5
            # a strong LoRA, so that losing part of it changes the tiny images visibly
            state[f"{key}.lora_down.weight"] = down.contiguous()
            state[f"{key}.lora_up.weight"] = (0.5 * up).contiguous()
            state[f"{key}.alpha"] = torch.tensor(float(r))
    return state


def _build_lcm_lora(dst: Path) -> None:
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    save_file(lcm_lora_state_dict(), str(dst / "pytorch_lora_weights.safetensors"))


def _build_faceid(dst: Path) -> None:
    import torch

    dst.mkdir(parents=True, exist_ok=True)
    for base in ("sd15", "sdxl"):
        torch.save(faceid_state_dict(base), dst / f"ip-adapter-faceid_{base}.bin")


def _build_instantid(dst: Path) -> None:
    import torch
    from diffusers import ControlNetModel

    with seeded("instantid/controlnet") as gen:
        controlnet = ControlNetModel(**CONTROLNET)
        # released ControlNets start from zero convolutions and learn them; random small values
        # here so the tiny IdentityNet visibly conditions the UNet
        for name, p in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block",
                                "controlnet_cond_embedding.conv_out")):
                with torch.no_grad():
                    p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    _save_diffusers(controlnet, dst / "ControlNetModel")
    torch.save(instantid_state_dict(), dst / "ip-adapter.bin")


BUILDERS: dict[str, Callable[[Path], None]] = {
    R.TINY_SD15_REPO: _build_sd15,
    R.TINY_SDXL_REPO: _build_sdxl,
    R.TINY_ARC2FACE_REPO: _build_arc2face,
    R.TINY_FACEID_REPO: _build_faceid,
    R.TINY_INSTANTID_REPO: _build_instantid,
    R.TINY_LCM_SD15_REPO: _build_lcm_lora,
}
#: the layout specs of the builder modules beside this one (``tiny_*.py``), part of the version hash
SPECS: dict[str, str] = {}


def _builder_modules() -> None:
    """Import the ``facegen.models.tiny_*`` modules once: each adds its repositories to
    :data:`BUILDERS` and its layout to :data:`SPECS` (a new base's tiny builder is its own file;
    a family from another package adds its own when it loads)."""
    import importlib
    import pkgutil

    import facegen.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("tiny_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def version_hash() -> str:
    """Changes whenever the tiny layout or the libraries that serialise it change."""
    import diffusers
    import torch
    import transformers

    _builder_modules()
    load_family_plugins()                         # an installed family's tiny layout (its SPECS entry) counts
    spec = json.dumps({
        "format": TINY_FORMAT_VERSION, "sd15": SD15_UNET, "sdxl": SDXL_UNET, "controlnet": CONTROLNET,
        "words": WORDS, "schedulers": [SD15_SCHEDULER, SDXL_SCHEDULER], "text": [SD15_TEXT_HIDDEN, SDXL_TEXT_HIDDEN], "lora": FACEID_LORA_RANK,
        "lcm_lora": [LCM_LORA_RANK, LCM_LORA_TARGETS],
        "resampler": [RESAMPLER_DIM, RESAMPLER_QUERIES], "id": R.TINY_ID_DIM,
        "libs": [diffusers.__version__, transformers.__version__, torch.__version__.split("+")[0]],
        "more": SPECS,
    }, sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def tiny_root(root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root) if root is not None else cache_dir() / "tiny" / version_hash()


def ensure_repo(repo: str, root: Path) -> Path:
    """Build one tiny repository under ``root`` unless it is already there (atomic rename)."""
    target = root / repo
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        logger.info("building tiny checkpoint %s in %s", repo, root)
        with quiet_loading():
            BUILDERS[repo](tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # a real failure, not a concurrent build that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_tiny(preset: R.Preset | str, root: str | os.PathLike[str] | None = None) -> Path:
    """Write every tiny repository ``preset`` needs; return the models root to resolve against."""
    preset = R.get_preset(preset) if isinstance(preset, str) else preset
    base = tiny_root(root)
    _builder_modules()
    for repo in dict.fromkeys(c.repo for c in preset.components):
        if repo not in BUILDERS:
            raise KeyError(f"no tiny builder for repository {repo}")
        ensure_repo(repo, base)
    return base
