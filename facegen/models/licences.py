"""The licence table: one named entry per set of weight terms, composed into the licence of
every preset, encoder and auxiliary weight (each sentence is written once, here).

A preset's ``licence`` is its entries' texts joined with ``"; "`` and its ``commercial_use``
holds only when every entry allows commercial use.
"""

from __future__ import annotations

from dataclasses import dataclass

from facegen.errors import InvalidArgumentError


@dataclass(frozen=True)
class Licence:
    """One set of terms: the sentence users are shown and whether it allows commercial use."""

    name: str
    text: str
    commercial_use: bool


LICENCES: dict[str, Licence] = {}


def register_licence(licence: Licence) -> Licence:
    if licence.name in LICENCES:
        raise InvalidArgumentError(f"licence '{licence.name}' is already registered")
    LICENCES[licence.name] = licence
    return licence


def get_licence(name: str) -> Licence:
    try:
        return LICENCES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown licence '{name}'; choose one of: {', '.join(sorted(LICENCES))}") from None


def licence_text(*keys: str) -> str:
    """The entries' sentences joined with ``"; "`` (the form presets and encoders carry)."""
    if not keys:
        raise InvalidArgumentError("a licence needs at least one entry")
    return "; ".join(get_licence(k).text for k in keys)


def commercial_use(*keys: str) -> bool:
    """Whether every entry allows commercial use."""
    if not keys:
        raise InvalidArgumentError("a licence needs at least one entry")
    return all(get_licence(k).commercial_use for k in keys)


for _entry in (
    Licence("sd15-openrail-m", "Stable Diffusion 1.5: CreativeML OpenRAIL-M", True),
    Licence("sdxl-openrail++-m", "SDXL base 1.0: CreativeML OpenRAIL++-M", True),
    Licence("lcm-lora-openrail++", "LCM-LoRA: OpenRAIL++", True),
    Licence("arc2face-cc-by-nc", "Arc2Face weights: CC BY-NC 4.0 (FoivosPar/Arc2Face)", False),
    Licence("ip-adapter-faceid-nc", "IP-Adapter-FaceID (h94): non-commercial research use (insightface)", False),
    Licence("instantid-apache", "InstantID weights: Apache-2.0 (InstantX/InstantID)", True),
    Licence("infiniteyou-cc-by-nc", "InfiniteYou weights: CC BY-NC 4.0 (ByteDance/InfiniteYou)", False),
    Licence("pulid-apache", "PuLID weights: Apache-2.0 (guozinan/PuLID, ToTheBeginning/PuLID)", True),
    Licence("dreamshaper-xl-openrail++", "DreamShaper XL Lightning (Lykon/dreamshaper-xl-lightning): "
                                         "CreativeML OpenRAIL++-M", True),
    Licence("flux1-dev-nc", "FLUX.1 [dev]: FLUX.1 [dev] Non-Commercial License (black-forest-labs/FLUX.1-dev, "
                            "gated: accept it on the hub)", False),
    Licence("facexlib-arcface", "facexlib ArcFace IR-SE50 (recognition_arcface_ir_se50.pth): MIT code; "
                                "weights trained on MS-Celeb-1M, research use", False),
    Licence("insightface-packs", "insightface pretrained packs (antelopev2, buffalo_l): "
                                 "non-commercial research use only", False),
    Licence("inswapper-nc", "insightface inswapper_128: non-commercial research use only", False),
    Licence("dlib-models", "dlib models: Boost Software License / CC0 (face_recognition_models)", True),
    Licence("gfpgan-apache", "GFPGAN v1.4 (TencentARC/GFPGAN): Apache-2.0", True),
    Licence("eva-clip-mit", "EVA-CLIP weights (QuanSun/EVA-CLIP EVA02_CLIP_L_336_psz14_s6B): MIT", True),
    Licence("facexlib-parsing", "facexlib BiSeNet face parser (parsing_bisenet.pth): MIT code; weights trained "
                                "on CelebAMask-HQ, non-commercial research use", False),
    Licence("facegen-tiny", "facegen tiny random weights (Apache-2.0); no real model inside", True),
):
    register_licence(_entry)
