"""The model registry: one frozen preset per way of generating a face from an identity.

A preset is data (timm ``PretrainedCfg`` style): which hub repositories and revisions it
needs, the exact files inside them (the hub layout is kept on disk:
``<models_dir>/<owner>/<repo>/<path>``), the ID-encoder contract of its adapter, licence,
and default sampler settings.  Loading code lives in the adapter families
(:mod:`facegen.adapters`); locating files lives in :mod:`facegen.models.resolve`.

Layouts follow ../shared/reference/compat.md (sections 2.2-2.4): Arc2Face
``arc2face/`` UNet + ``encoder/`` CLIP text encoder (``pytorch_model.bin``), IP-Adapter-FaceID
``ip-adapter-faceid_sd15.bin`` / ``_sdxl.bin`` (``image_proj`` + ``ip_adapter`` incl. LoRA),
InstantID ``ControlNetModel/`` + ``ip-adapter.bin`` (Resampler ``image_proj`` + ``ip_adapter``),
InfiniteYou (2.7) ``infu_flux_v1.0/<stage>/{InfuseNetModel/, image_proj_model.bin}`` on FLUX.1-dev,
PuLID (2.5) in :mod:`facegen.models.presets_pulid`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from facegen.errors import InvalidArgumentError
from facegen.models.licences import commercial_use, licence_text
from facegen.models.plugins import load_family_plugins, load_preset_modules

Family = Literal["arc2face", "faceid", "instantid", "infiniteyou", "pulid-sdxl", "pulid-flux"]
BaseArch = Literal["sd15", "sdxl", "flux"]


@dataclass(frozen=True)
class Component:
    """Files one component needs from one hub repository.

    role: what the loader uses it for (``base``, ``unet``, ``text_encoder``, ``ip_adapter``,
        ``controlnet``, ``lcm_lora``).
    subfolder: the component's folder inside the repository ("" for the repository root).
    files: every file to fetch, relative to the repository root (hub paths).
    sha256: optional ``{path: sha256}`` checked after a download.
    """

    role: str
    repo: str
    files: tuple[str, ...]
    subfolder: str = ""
    revision: str = "main"
    weight_name: str | None = None
    sha256: tuple[tuple[str, str], ...] = ()
    #: how to get access to a gated repository (shown when its files are missing); "" when open
    access: str = ""


@dataclass(frozen=True)
class SamplerDefaults:
    scheduler: str
    steps: int
    guidance: float
    height: int
    width: int
    adapter_scale: float | None = None
    controlnet_scale: float | None = None
    lora_scale: float | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    #: where the face goes when a reference photo is given: ``"reference"`` (upstream InstantID:
    #: the photo's own keypoints on the photo resized to the output) or ``"portrait"``; None: the
    #: family has no layout choice
    face_layout: str | None = None
    #: upstream's ``resize_img(max_side, min_side, base_pixel_number)`` for the reference layout
    reference_resize: tuple[int, int, int] | None = None
    #: fraction of the denoising steps (start, end) the ControlNet acts in (None: all of them)
    control_guidance: tuple[float, float] | None = None


@dataclass(frozen=True)
class Preset:
    """One generation preset.

    encoder: the ID-encoder contract (``facegen.id.ENCODERS`` name) the adapter was trained on.
    normalise: whether the adapter takes unit-norm vectors (Arc2Face, FaceID) or raw ones
        (InstantID) — a property of the adapter's training, not of the encoder.
    id_dim: the embedding dimension the adapter's weights take.
    """

    name: str
    family: Family
    base: BaseArch
    encoder: str
    normalise: bool
    id_dim: int
    components: tuple[Component, ...]
    defaults: SamplerDefaults
    licence: str
    commercial_use: bool
    description: str
    tiny: bool = False
    notes: str = ""
    twin: str | None = None       # tiny presets: the real preset whose components and files they mirror

    def component(self, role: str) -> Component:
        for comp in self.components:
            if comp.role == role:
                return comp
        raise KeyError(f"preset '{self.name}' has no '{role}' component")

    def has(self, role: str) -> bool:
        return any(c.role == role for c in self.components)

    @property
    def needs_licence(self) -> bool:
        return not self.commercial_use

    def all_files(self) -> list[tuple[str, str]]:
        """Every ``(repo, path)`` the preset needs, without duplicates, in a stable order."""
        seen: dict[tuple[str, str], None] = {}
        for comp in self.components:
            for f in comp.files:
                seen.setdefault((comp.repo, f), None)
        return list(seen)


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise InvalidArgumentError(f"preset '{preset.name}' is already registered")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        load_family_plugins()
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown model preset '{name}'; choose one of: {', '.join(sorted(PRESETS))}") from None


def find_preset(name: str) -> Preset | None:
    """The registered preset ``name`` (installed families included), or None."""
    if name not in PRESETS:
        load_family_plugins()
    return PRESETS.get(name)


def list_presets(include_tiny: bool = True) -> list[str]:
    load_family_plugins()
    return sorted(n for n, p in PRESETS.items() if include_tiny or not p.tiny)


def tiny_twin(name: str) -> Preset | None:
    """The tiny preset that mirrors real preset ``name`` (same components, same files), if any."""
    for p in PRESETS.values():
        if p.tiny and p.twin == name:
            return p
    return None


# --------------------------------------------------------------------------- file lists

def _tokenizer(folder: str) -> tuple[str, ...]:
    return tuple(f"{folder}/{n}" for n in
                 ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"))


def _diffusers_model(folder: str) -> tuple[str, ...]:
    return (f"{folder}/config.json", f"{folder}/diffusion_pytorch_model.safetensors")


def _text_encoder(folder: str) -> tuple[str, ...]:
    return (f"{folder}/config.json", f"{folder}/model.safetensors")


def sd15_base_files(with_unet_and_text: bool) -> tuple[str, ...]:
    files = ("model_index.json", "scheduler/scheduler_config.json", *_tokenizer("tokenizer"),
             *_diffusers_model("vae"))
    if with_unet_and_text:
        files += (*_text_encoder("text_encoder"), *_diffusers_model("unet"))
    return files


def sdxl_base_files() -> tuple[str, ...]:
    return ("model_index.json", "scheduler/scheduler_config.json",
            *_tokenizer("tokenizer"), *_tokenizer("tokenizer_2"),
            *_text_encoder("text_encoder"), *_text_encoder("text_encoder_2"),
            *_diffusers_model("unet"), *_diffusers_model("vae"))


def _sharded(folder: str, stem: str, n: int, index: str) -> tuple[str, ...]:
    """A sharded checkpoint as the hub stores it: ``<stem>-0000i-of-0000n.safetensors`` + its index."""
    return (*(f"{folder}/{stem}-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)), f"{folder}/{index}")


def flux_base_files() -> tuple[str, ...]:
    """The diffusers layout of black-forest-labs/FLUX.1-dev (CLIP-L + T5-XXL, 3-shard transformer)."""
    return ("model_index.json", "scheduler/scheduler_config.json",
            *_text_encoder("text_encoder"), *_tokenizer("tokenizer"),
            "text_encoder_2/config.json",
            *_sharded("text_encoder_2", "model", 2, "model.safetensors.index.json"),
            *(f"tokenizer_2/{n}" for n in ("special_tokens_map.json", "spiece.model", "tokenizer.json",
                                           "tokenizer_config.json")),
            "transformer/config.json",
            *_sharded("transformer", "diffusion_pytorch_model", 3, "diffusion_pytorch_model.safetensors.index.json"),
            *_diffusers_model("vae"))


ARC2FACE_UNET_FILES = _diffusers_model("arc2face")
ARC2FACE_ENCODER_FILES = ("encoder/config.json", "encoder/pytorch_model.bin")
INSTANTID_CONTROLNET_FILES = _diffusers_model("ControlNetModel")

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
ARC2FACE_REPO = "FoivosPar/Arc2Face"
FACEID_REPO = "h94/IP-Adapter-FaceID"
INSTANTID_REPO = "InstantX/InstantID"
LCM_SD15_REPO = "latent-consistency/lcm-lora-sdv1-5"
FLUX_DEV_REPO = "black-forest-labs/FLUX.1-dev"
INFINITEYOU_REPO = "ByteDance/InfiniteYou"
FLUX_DEV_ACCESS = ("FLUX.1-dev is gated: sign in at https://huggingface.co/black-forest-labs/FLUX.1-dev and accept "
                   "its licence, then `hf auth login` with a read token (or copy a downloaded copy there)")
INFINITEYOU_PROMPT = "A person, portrait, cinematic"

FACEID_PROMPT = "photo of a person, best quality, high quality"
NEGATIVE_PROMPT = "monochrome, lowres, bad anatomy, worst quality, low quality, blurry"
INSTANTID_NEGATIVE = ("(lowres, low quality, worst quality:1.2), (text:1.2), watermark, painting, "
                      "drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, disfigured")


def licensed(*keys: str) -> dict[str, Any]:
    """``licence`` and ``commercial_use`` of a preset, composed from the licence table."""
    return {"licence": licence_text(*keys), "commercial_use": commercial_use(*keys)}


def _lcm_lora_component() -> Component:
    return Component("lcm_lora", LCM_SD15_REPO, ("pytorch_lora_weights.safetensors",),
                     weight_name="pytorch_lora_weights.safetensors")


def _arc2face_components() -> tuple[Component, ...]:
    return (
        Component("base", SD15_REPO, sd15_base_files(with_unet_and_text=False)),
        Component("unet", ARC2FACE_REPO, ARC2FACE_UNET_FILES, subfolder="arc2face"),
        Component("text_encoder", ARC2FACE_REPO, ARC2FACE_ENCODER_FILES, subfolder="encoder"),
    )


def _faceid_components(base: BaseArch) -> tuple[Component, ...]:
    weight = f"ip-adapter-faceid_{base}.bin"
    if base == "sd15":
        base_comp = Component("base", SD15_REPO, sd15_base_files(with_unet_and_text=True))
    else:
        base_comp = Component("base", SDXL_REPO, sdxl_base_files())
    return (base_comp, Component("ip_adapter", FACEID_REPO, (weight,), weight_name=weight))


def _instantid_components() -> tuple[Component, ...]:
    return (
        Component("base", SDXL_REPO, sdxl_base_files()),
        Component("controlnet", INSTANTID_REPO, INSTANTID_CONTROLNET_FILES, subfolder="ControlNetModel"),
        Component("ip_adapter", INSTANTID_REPO, ("ip-adapter.bin",), weight_name="ip-adapter.bin"),
    )


def _infiniteyou_components(stage: str) -> tuple[Component, ...]:
    folder = f"infu_flux_v1.0/{stage}"
    return (
        Component("base", FLUX_DEV_REPO, flux_base_files(), access=FLUX_DEV_ACCESS),
        Component("controlnet", INFINITEYOU_REPO,
                  (f"{folder}/InfuseNetModel/config.json",
                   *_sharded(f"{folder}/InfuseNetModel", "diffusion_pytorch_model", 2,
                             "diffusion_pytorch_model.safetensors.index.json")),
                  subfolder=f"{folder}/InfuseNetModel"),
        Component("image_proj", INFINITEYOU_REPO, (f"{folder}/image_proj_model.bin",),
                  weight_name=f"{folder}/image_proj_model.bin"),
    )


# Tiny repositories live in the tiny cache (facegen.models.tiny), in the same layout.
TINY_SD15_REPO = "facegen-tiny/stable-diffusion-v1-5"
TINY_SDXL_REPO = "facegen-tiny/stable-diffusion-xl-base-1.0"
TINY_ARC2FACE_REPO = "facegen-tiny/Arc2Face"
TINY_FACEID_REPO = "facegen-tiny/IP-Adapter-FaceID"
TINY_INSTANTID_REPO = "facegen-tiny/InstantID"
TINY_LCM_SD15_REPO = "facegen-tiny/lcm-lora-sdv1-5"
TINY_FLUX_DEV_REPO = "facegen-tiny/FLUX.1-dev"
TINY_INFINITEYOU_REPO = "facegen-tiny/InfiniteYou"

#: each real repository's tiny twin (same layout, random weights)
TINY_REPOS: dict[str, str] = {
    SD15_REPO: TINY_SD15_REPO, SDXL_REPO: TINY_SDXL_REPO, ARC2FACE_REPO: TINY_ARC2FACE_REPO,
    FACEID_REPO: TINY_FACEID_REPO, INSTANTID_REPO: TINY_INSTANTID_REPO, LCM_SD15_REPO: TINY_LCM_SD15_REPO,
    FLUX_DEV_REPO: TINY_FLUX_DEV_REPO, INFINITEYOU_REPO: TINY_INFINITEYOU_REPO,
}

TINY_ENCODER = "dlib-resnet-v1"
TINY_ID_DIM = 128
TINY_SIZE = 64            # output side of every tiny preset
TINY_STEPS = 4            # at most this many steps (fewer when the twin takes fewer)
TINY_PIXEL_MULTIPLE = 8   # the tiny reference layout's size step: the pipelines' own (multiple of 8), so a photo keeps
#                            its aspect within 8 px (16 made a 1480x832 photo 80x32; upstream's 64 does not scale down)
_TINY_NOTE = ("random weights for tests and demos: outputs are noise-like images, not faces; "
              "the ID contract is the offline dlib descriptor so it runs on any machine")


#: real encoder -> (tiny encoder, ID size) for conditions that are more than one vector (default: the dlib one)
TINY_CONDITIONS: dict[str, tuple[str, int]] = {}


def tiny_twin_of(real: Preset, name: str, description: str) -> Preset:
    """The tiny preset mirroring ``real``: same family, base, adapter normalisation, component
    roles and files, in the tiny repositories; the offline tiny encoder and ID size (the one
    :data:`TINY_CONDITIONS` names for ``real``'s encoder, else the dlib descriptor); outputs and
    the reference layout scaled to :data:`TINY_SIZE`; at most :data:`TINY_STEPS` steps."""
    encoder, id_dim = TINY_CONDITIONS.get(real.encoder, (TINY_ENCODER, TINY_ID_DIM))
    d = real.defaults
    scale = TINY_SIZE / d.height
    resize = None
    if d.reference_resize is not None:
        max_side, min_side, _ = d.reference_resize
        resize = (round(max_side * scale), round(min_side * scale), TINY_PIXEL_MULTIPLE)
    defaults = dataclasses.replace(d, steps=min(d.steps, TINY_STEPS), height=TINY_SIZE,
                                   width=round(d.width * scale / TINY_PIXEL_MULTIPLE) * TINY_PIXEL_MULTIPLE,
                                   reference_resize=resize)
    try:
        components = tuple(dataclasses.replace(c, repo=TINY_REPOS[c.repo], access="") for c in real.components)
    except KeyError as exc:
        raise InvalidArgumentError(f"preset '{real.name}': repository {exc} has no tiny twin in TINY_REPOS") from None
    return Preset(name=name, family=real.family, base=real.base, encoder=encoder, normalise=real.normalise,
                  id_dim=id_dim, components=components, defaults=defaults, description=description,
                  tiny=True, notes=_TINY_NOTE, twin=real.name, **licensed("facegen-tiny"))


_ARC2FACE = register_preset(Preset(
    name="arc2face",
    family="arc2face",
    base="sd15",
    encoder="arc2face-arcface",
    normalise=True,
    id_dim=512,
    components=_arc2face_components(),
    defaults=SamplerDefaults(scheduler="dpm++", steps=25, guidance=3.0, height=512, width=512),
    **licensed("arc2face-cc-by-nc", "sd15-openrail-m", "insightface-packs"),
    description="Arc2Face: SD1.5 UNet + CLIP text encoder fine-tuned on ArcFace embeddings "
                "('photo of a id person'); no text prompt",
))

_ARC2FACE_LCM = register_preset(Preset(
    name="arc2face-lcm",
    family="arc2face",
    base="sd15",
    encoder="arc2face-arcface",
    normalise=True,
    id_dim=512,
    components=_arc2face_components() + (_lcm_lora_component(),),
    defaults=SamplerDefaults(scheduler="lcm", steps=3, guidance=1.0, height=512, width=512),
    **licensed("arc2face-cc-by-nc", "lcm-lora-openrail++", "sd15-openrail-m", "insightface-packs"),
    description="Arc2Face with the LCM-LoRA for SD1.5: 2-4 steps, guidance 1.0",
))

_FACEID_SD15 = register_preset(Preset(
    name="faceid-sd15",
    family="faceid",
    base="sd15",
    encoder="buffalo_l-w600k-r50",
    normalise=True,
    id_dim=512,
    components=_faceid_components("sd15"),
    defaults=SamplerDefaults(scheduler="ddim", steps=30, guidance=7.5, height=512, width=512,
                             adapter_scale=1.0, lora_scale=1.0, prompt=FACEID_PROMPT,
                             negative_prompt=NEGATIVE_PROMPT),
    **licensed("ip-adapter-faceid-nc", "sd15-openrail-m", "insightface-packs"),
    description="IP-Adapter-FaceID on SD1.5 (4 ID tokens + the LoRA shipped in the .bin)",
))

_FACEID_SDXL = register_preset(Preset(
    name="faceid-sdxl",
    family="faceid",
    base="sdxl",
    encoder="buffalo_l-w600k-r50",
    normalise=True,
    id_dim=512,
    components=_faceid_components("sdxl"),
    defaults=SamplerDefaults(scheduler="ddim", steps=30, guidance=7.5, height=1024, width=1024,
                             adapter_scale=1.0, lora_scale=1.0, prompt=FACEID_PROMPT,
                             negative_prompt=NEGATIVE_PROMPT),
    **licensed("ip-adapter-faceid-nc", "sdxl-openrail++-m", "insightface-packs"),
    description="IP-Adapter-FaceID on SDXL (4 ID tokens + the LoRA shipped in the .bin)",
))

_INSTANTID = register_preset(Preset(
    name="instantid",
    family="instantid",
    base="sdxl",
    encoder="antelopev2-glintr100",
    normalise=False,
    id_dim=512,
    components=_instantid_components(),
    defaults=SamplerDefaults(scheduler="euler", steps=30, guidance=5.0, height=1024, width=1024,
                             adapter_scale=0.8, controlnet_scale=0.8, prompt=FACEID_PROMPT,
                             negative_prompt=INSTANTID_NEGATIVE, face_layout="reference",
                             reference_resize=(1280, 1024, 64)),
    **licensed("instantid-apache", "sdxl-openrail++-m", "insightface-packs"),
    description="InstantID: SDXL + IdentityNet (ControlNet on the 5-keypoint drawing and the "
                "face tokens) + Resampler face tokens in IP attention",
))

def _infiniteyou_preset(name: str, stage: str, description: str) -> Preset:
    return Preset(
        name=name, family="infiniteyou", base="flux", encoder="infiniteyou-ir-se50", normalise=True, id_dim=512,
        components=_infiniteyou_components(stage),
        defaults=SamplerDefaults(scheduler="flow-euler", steps=30, guidance=3.5, height=1152, width=864,
                                 controlnet_scale=1.0, prompt=INFINITEYOU_PROMPT, control_guidance=(0.0, 1.0)),
        **licensed("infiniteyou-cc-by-nc", "flux1-dev-nc", "insightface-packs", "facexlib-arcface"),
        description=description,
        notes="FLUX.1-dev in bf16 needs ~43 GB of GPU memory; with model CPU offload ~30 GB; with 8-bit "
              "weights (optimum-quanto) ~24 GB, both ~16 GB (upstream's figures)")


_INFINITEYOU = register_preset(_infiniteyou_preset(
    "infiniteyou", "aes_stage2", "InfiniteYou (FLUX.1-dev + InfuseNet fed 8 ID tokens from a Resampler), "
                                 "aes_stage2: the upstream default (aesthetics)"))
_INFINITEYOU_SIM = register_preset(_infiniteyou_preset(
    "infiniteyou-sim", "sim_stage1", "InfiniteYou sim_stage1: higher ID similarity, less aesthetic polish"))

register_preset(tiny_twin_of(
    _ARC2FACE, "tiny", "tiny Arc2Face-family checkpoint (random weights, real layout)"))
register_preset(tiny_twin_of(
    _FACEID_SD15, "tiny-faceid", "tiny IP-Adapter-FaceID (SD1.5 layout) checkpoint (random weights, real layout)"))
register_preset(tiny_twin_of(
    _FACEID_SDXL, "tiny-faceid-sdxl",
    "tiny IP-Adapter-FaceID (SDXL layout) checkpoint (random weights, real layout)"))
register_preset(tiny_twin_of(
    _INSTANTID, "tiny-instantid", "tiny InstantID checkpoint (random weights, real layout)"))
register_preset(tiny_twin_of(
    _ARC2FACE_LCM, "tiny-arc2face-lcm", "tiny Arc2Face + LCM-LoRA checkpoint (random weights, real layouts)"))
register_preset(tiny_twin_of(
    _INFINITEYOU, "tiny-infiniteyou", "tiny InfiniteYou (FLUX + InfuseNet) checkpoint (random weights, real layouts)"))
register_preset(tiny_twin_of(
    _INFINITEYOU_SIM, "tiny-infiniteyou-sim",
    "tiny InfiniteYou sim_stage1 checkpoint (random weights, real layouts)"))



load_preset_modules()                 # families whose presets live in a file of their own (presets_*.py)
