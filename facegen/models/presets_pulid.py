"""PuLID presets (ToTheBeginning/PuLID, compat.md 2.5): ``pulid_v1.1.safetensors`` on an SDXL (Lightning)
base, ``pulid_flux_v0.9.1.safetensors`` on FLUX.1-dev (hub ``guozinan/PuLID``), and their tiny twins on the
``pulid-tiny`` condition.  Registered on import by :mod:`facegen.models.registry`.
"""

from __future__ import annotations

from facegen.models.eva_clip import TINY_EVA
from facegen.models.registry import (
    FLUX_DEV_ACCESS,
    FLUX_DEV_REPO,
    NEGATIVE_PROMPT,
    TINY_CONDITIONS,
    TINY_ID_DIM,
    TINY_REPOS,
    TINY_SDXL_REPO,
    Component,
    Preset,
    SamplerDefaults,
    licensed,
    flux_base_files,
    register_preset,
    sdxl_base_files,
    tiny_twin_of,
)

PULID_REPO = "guozinan/PuLID"
#: upstream v1.1's default base (pulid/pipeline_v1_1.py; docs/pulid_v1.1.md also names RunDiffusion/Juggernaut-XL-v9)
PULID_SDXL_BASE = "Lykon/dreamshaper-xl-lightning"
PULID_PROMPT = "portrait, color, cinematic"           # upstream app's default prompt
PULID_ENCODER = "pulid-antelopev2-eva02"
#: the weights the pulid-antelopev2-eva02 condition is made with (its encoder entry's licence)
ENCODER_LICENCES = ("insightface-packs", "eva-clip-mit", "facexlib-parsing")
PULID_ID_DIM = 1280                                    # antelopev2 (512, raw) + EVA02-CLIP-L CLS (768, unit norm)
TINY_PULID_REPO = "facegen-tiny/PuLID"
TINY_REPOS.update({PULID_SDXL_BASE: TINY_SDXL_REPO, PULID_REPO: TINY_PULID_REPO})


def _pulid_sdxl_components(base_repo: str) -> tuple[Component, ...]:
    return (Component("base", base_repo, sdxl_base_files()),
            Component("pulid", PULID_REPO, ("pulid_v1.1.safetensors",), weight_name="pulid_v1.1.safetensors"))


def _pulid_flux_components() -> tuple[Component, ...]:
    return (Component("base", FLUX_DEV_REPO, flux_base_files(), access=FLUX_DEV_ACCESS),
            Component("pulid", PULID_REPO, ("pulid_flux_v0.9.1.safetensors",),
                      weight_name="pulid_flux_v0.9.1.safetensors"))


def pulid_sdxl_preset(name: str, base_repo: str = PULID_SDXL_BASE, base_licence: str = "dreamshaper-xl-openrail++",
                      description: str = "") -> Preset:
    """PuLID v1.1 on the SDXL base ``base_repo`` (a diffusers-layout SDXL repository; Lightning bases
    suit its 4-step default), to register under ``name``: ``register_preset(pulid_sdxl_preset(
    "pulid-juggernaut", "RunDiffusion/Juggernaut-XL-v9", "sdxl-openrail++-m"))``."""
    return Preset(
        name=name, family="pulid-sdxl", base="sdxl", encoder=PULID_ENCODER, normalise=False, id_dim=PULID_ID_DIM,
        components=_pulid_sdxl_components(base_repo),
        defaults=SamplerDefaults(scheduler="dpm++-karras", steps=4, guidance=1.2, height=1024, width=1024,
                                 adapter_scale=1.0, prompt=PULID_PROMPT, negative_prompt=NEGATIVE_PROMPT),
        **licensed("pulid-apache", base_licence, *ENCODER_LICENCES),
        description=description or f"PuLID v1.1 (IDFormer ID tokens in extra cross-attention) on {base_repo}",
        notes="upstream's settings for Lightning bases: 4 steps, DPM++ with Karras sigmas, guidance 1.2")


_PULID_SDXL = register_preset(pulid_sdxl_preset(
    "pulid-sdxl", description="PuLID v1.1 on SDXL (Lykon/dreamshaper-xl-lightning, upstream's default base): "
                              "IDFormer ID tokens in extra cross-attention of the UNet, id scale = adapter scale"))

_PULID_FLUX = register_preset(Preset(
    name="pulid-flux", family="pulid-flux", base="flux", encoder=PULID_ENCODER, normalise=False,
    id_dim=PULID_ID_DIM, components=_pulid_flux_components(),
    defaults=SamplerDefaults(scheduler="flow-euler", steps=20, guidance=4.0, height=1152, width=896,
                             adapter_scale=1.0, prompt=PULID_PROMPT),
    **licensed("pulid-apache", "flux1-dev-nc", *ENCODER_LICENCES),
    description="PuLID-FLUX v0.9.1 on FLUX.1-dev: IDFormer ID tokens through cross-attention after every 2nd "
                "double / 4th single DiT block, id weight = adapter scale",
    notes="upstream's figures: bf16 peak < 45 GB; model CPU offload < 30 GB; fp8 + offload ~17 GB"))

#: the tiny PuLID condition (pulid-tiny): dlib descriptor (128) + the tiny EVA tower's CLS
TINY_PULID_ID_DIM = TINY_ID_DIM + TINY_EVA.embed_dim
TINY_CONDITIONS[PULID_ENCODER] = ("pulid-tiny", TINY_PULID_ID_DIM)

register_preset(tiny_twin_of(
    _PULID_SDXL, "tiny-pulid-sdxl", "tiny PuLID v1.1 on SDXL (random weights, real layouts)"))
register_preset(tiny_twin_of(
    _PULID_FLUX, "tiny-pulid-flux", "tiny PuLID-FLUX v0.9.1 (random weights, real layouts)"))
