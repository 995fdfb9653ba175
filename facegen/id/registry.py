"""The ID-encoder registry: one frozen entry per recognition network, with its contract.

Released adapter weights were each trained on one recognition network
(../shared/reference/compat.md, section 0).  An entry says how to run the network
(detector, alignment template, crop size, colour order, mean/std) and how its vectors are
used (dimension, how two vectors are compared and the threshold for "same person"), plus
its licence and weight files.  Whether an adapter takes unit-norm or raw vectors is a property
of the adapter's training, so it is the preset's ``normalise``, not an encoder field.
Licences come from :mod:`facegen.models.licences`; the insightface packs' files from their
:mod:`facegen.models.auxiliary` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facegen.errors import InvalidArgumentError
from facegen.faces.align import crop_template
from facegen.models.auxiliary import WeightFile, get_auxiliary
from facegen.models.eva_clip import (EVA02_L14_336, EVA_FILE, PARSING_FILE, TINY_EVA, TINY_EVA_REPO,
                                      TINY_PARSING_REPO)
from facegen.models.licences import commercial_use, licence_text

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "EncoderSpec", "WeightFile", "get_encoder_spec", "register_encoder",
           "run_encoder_spec"]


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    network: str
    backend: Literal["dlib", "onnx", "torch-irse", "torch-iresnet", "eva-composite"]
    detector: str                 # detector backend name (facegen.faces.detect.DETECTORS)
    template: str                 # crop template name (facegen.faces.align.CROP_TEMPLATES)
    crop_size: int
    color_order: Literal["rgb", "bgr"]
    mean: float
    std: float
    dim: int
    metric: Literal["cosine", "euclidean"]
    threshold: float              # on `similarity`: same person when similarity >= threshold
    licence: str
    commercial_use: bool
    files: tuple[WeightFile, ...] = ()
    detector_pack: str | None = None   # insightface pack whose detector it pairs with
    notes: str = ""
    typical_norm: float | None = None  # mean raw-vector norm on real faces, when measured
    path: str | None = None            # a trained run's folder (facegen fr-train), its own network
    recogniser: str | None = None      # a composite's first part: the entry whose vector it starts with (PuLID)
    tiny: bool = False                 # its files are facegen's tiny random weights, built on first use


ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    if spec.name in ENCODERS:
        raise InvalidArgumentError(f"encoder '{spec.name}' is already registered")
    crop = crop_template(spec.template)          # a typo in the template is an error here
    if crop.size != spec.crop_size:
        raise InvalidArgumentError(f"encoder '{spec.name}': template '{spec.template}' crops {crop.size} px, "
                                   f"but crop_size is {spec.crop_size}")
    if spec.recogniser is not None and spec.recogniser not in ENCODERS:
        raise InvalidArgumentError(f"encoder '{spec.name}': its recogniser '{spec.recogniser}' is not registered")
    ENCODERS[spec.name] = spec
    return spec


def get_encoder_spec(name: str) -> EncoderSpec:
    """The entry registered as ``name``, or the entry of the trained run in folder ``name``
    (``facegen fr-train``'s output: a run is an encoder wherever facegen takes one)."""
    if name in ENCODERS:
        return ENCODERS[name]
    if name and Path(name).is_dir():
        return run_encoder_spec(name)
    raise InvalidArgumentError(
        f"unknown encoder '{name}'; choose one of: {', '.join(sorted(ENCODERS))}, or a trained run's folder")


def run_encoder_spec(path: str | Path) -> EncoderSpec:
    """The encoder entry of a trained run folder, named by its absolute path (so an embedding
    records which run made it)."""
    from facegen.id.iresnet import read_run_config  # noqa: PLC0415

    p = Path(path).resolve()
    key = str(p)
    cfg = read_run_config(p)
    stamp = (p / "model.safetensors").stat().st_mtime_ns
    cached = _RUN_SPECS.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    spec = EncoderSpec(
        name=key, network=f"IResNet {cfg['arch']} trained by facegen fr-train"
                          + (f" on {cfg['dataset']}" if cfg.get("dataset") else ""),
        backend="torch-iresnet", detector=cfg["detector"], template=cfg["template"], crop_size=cfg["crop_size"],
        color_order="bgr" if cfg.get("color_order") == "bgr" else "rgb", mean=float(cfg["mean"]),
        std=float(cfg["std"]), dim=cfg["embedding_size"], metric="cosine",
        threshold=float(cfg.get("threshold", 0.3)),
        licence=str(cfg.get("licence", "your own trained network (mind the licence of the data it was trained on)")),
        commercial_use=True, path=key, notes="a facegen fr-train run")
    crop = crop_template(spec.template)
    if crop.size != spec.crop_size:
        raise InvalidArgumentError(f"{p}: template '{spec.template}' crops {crop.size} px, "
                                   f"but crop_size is {spec.crop_size}")
    _RUN_SPECS[key] = (stamp, spec)
    return spec


_RUN_SPECS: dict[str, tuple[int, EncoderSpec]] = {}


DEFAULT_ENCODER = "dlib-resnet-v1"


register_encoder(EncoderSpec(
    name="dlib-resnet-v1",
    network="dlib ResNet-29 metric network (dlib_face_recognition_resnet_model_v1), 128-D",
    backend="dlib",
    detector="dlib",
    template="dlib-chip150",
    crop_size=150,
    color_order="rgb",
    mean=0.0, std=1.0,
    dim=128,
    metric="euclidean",
    # dlib's own rule is Euclidean distance < 0.6; similarity = 1 - distance.
    threshold=0.4,
    licence=licence_text("dlib-models"),
    commercial_use=commercial_use("dlib-models"),
    notes="offline default; installed with face_recognition_models",
    typical_norm=1.42,  # measured on ../shared/faces (1.40-1.45)
))

register_encoder(EncoderSpec(
    name="antelopev2-glintr100",
    network="ArcFace ResNet-100 trained on Glint360K (insightface antelopev2 glintr100.onnx)",
    backend="onnx",
    detector="insightface",
    template="arcface112",
    crop_size=112,
    color_order="rgb",
    mean=127.5, std=127.5,
    dim=512,
    metric="cosine",
    threshold=0.3,
    licence=get_auxiliary("antelopev2").licence,
    commercial_use=get_auxiliary("antelopev2").commercial_use,
    files=(get_auxiliary("antelopev2").file("recognition"),),
    detector_pack="antelopev2",
    notes="InstantID and PuLID feed the raw (un-normalised) vector",
))

register_encoder(EncoderSpec(
    name="buffalo_l-w600k-r50",
    network="ArcFace ResNet-50 trained on WebFace600K (insightface buffalo_l w600k_r50.onnx)",
    backend="onnx",
    detector="insightface",
    template="arcface112",
    crop_size=112,
    color_order="rgb",
    mean=127.5, std=127.5,
    dim=512,
    metric="cosine",
    threshold=0.3,
    licence=get_auxiliary("buffalo_l").licence,
    commercial_use=get_auxiliary("buffalo_l").commercial_use,
    files=(get_auxiliary("buffalo_l").file("recognition"),),
    detector_pack="buffalo_l",
    notes="IP-Adapter-FaceID and inswapper take normed_embedding",
))

register_encoder(EncoderSpec(
    name="arc2face-arcface",
    network="ArcFace ResNet-100 trained on WebFace42M (Arc2Face arcface.onnx)",
    backend="onnx",
    detector="insightface",
    template="arcface112",
    crop_size=112,
    color_order="rgb",
    mean=127.5, std=127.5,
    dim=512,
    metric="cosine",
    threshold=0.3,
    # its detector is the antelopev2 pack's
    licence=licence_text("arc2face-cc-by-nc", "insightface-packs"),
    commercial_use=commercial_use("arc2face-cc-by-nc", "insightface-packs"),
    files=(WeightFile("arc2face/arcface.onnx", url="FoivosPar/Arc2Face:arcface.onnx",
                      alternatives=("FoivosPar/Arc2Face/arcface.onnx", "antelopev2/arcface.onnx"),
                      role="recognition"),),
    detector_pack="antelopev2",
    notes="Arc2Face L2-normalises the vector before the id-token substitution",
))

register_encoder(EncoderSpec(
    name="infiniteyou-ir-se50",
    network="ArcFace IR-SE50 (facexlib recognition_arcface_ir_se50.pth, InsightFace_Pytorch layout), "
            "on the BGR crop in [-1, 1]",
    backend="torch-irse",
    detector="insightface",
    template="arcface112",
    crop_size=112,
    color_order="bgr",
    mean=127.5, std=127.5,
    dim=512,
    metric="cosine",
    threshold=0.3,      # not measured here (no weights offline): ArcFace-family default
    licence=licence_text("facexlib-arcface", "insightface-packs"),
    commercial_use=commercial_use("facexlib-arcface", "insightface-packs"),
    files=(WeightFile("facexlib/recognition_arcface_ir_se50.pth",
                      url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/"
                          "recognition_arcface_ir_se50.pth",
                      alternatives=("recognition_arcface_ir_se50.pth", "facexlib/weights/recognition_arcface_ir_se50.pth"),
                      role="recognition"),),
    detector_pack="antelopev2",
    notes="InfiniteYou feeds the L2-normalised vector (upstream: SCRFD at 640, 320, then 160)",
))

_PULID_NOTES = ("PuLID's id_cond: the recogniser's vector (raw) then the EVA02-CLIP CLS of the FFHQ-512 crop with "
                "the background whitened by face parsing, grey, at {side} px (L2-normalised); "
                "meta['vit_hidden'] = the EVA states entering blocks {blocks}, float32 (L, T, W) = {shape}")

register_encoder(EncoderSpec(
    name="pulid-antelopev2-eva02",
    network="PuLID ID condition: antelopev2 glintr100 (raw, 512) + EVA02-CLIP-L-14-336 CLS (normalised, 768)",
    backend="eva-composite",
    detector="insightface",
    template="ffhq512",
    crop_size=512,
    color_order="rgb",
    mean=0.0, std=255.0,          # the FFHQ crop in [0, 1] (then ImageNet mean/std to parse, CLIP's for EVA)
    dim=512 + EVA02_L14_336.embed_dim,
    metric="cosine",
    threshold=0.3,                # not measured here (no weights offline): the recogniser's
    licence=licence_text("insightface-packs", "eva-clip-mit", "facexlib-parsing"),
    commercial_use=commercial_use("insightface-packs", "eva-clip-mit", "facexlib-parsing"),
    files=(get_auxiliary("eva02-clip-l-336").file("eva"), get_auxiliary("facexlib-parsing").file("parsing")),
    detector_pack="antelopev2",
    recogniser="antelopev2-glintr100",
    notes=_PULID_NOTES.format(side=EVA02_L14_336.image_size, blocks=EVA02_L14_336.hidden_blocks,
                              shape=(5, EVA02_L14_336.tokens, EVA02_L14_336.width)),
))

register_encoder(EncoderSpec(
    name="pulid-tiny",
    network="tiny PuLID ID condition: dlib descriptor (128) + a tiny random-weight EVA tower's CLS "
            f"(normalised, {TINY_EVA.embed_dim})",
    backend="eva-composite",
    detector="dlib",
    template="ffhq512",
    crop_size=512,
    color_order="rgb",
    mean=0.0, std=255.0,
    dim=128 + TINY_EVA.embed_dim,
    metric="cosine",
    threshold=0.3,                # random EVA weights: not a verification threshold
    licence=licence_text("dlib-models", "facegen-tiny"),
    commercial_use=commercial_use("dlib-models", "facegen-tiny"),
    files=(WeightFile(f"{TINY_EVA_REPO}/{EVA_FILE}", role="eva"),
           WeightFile(f"{TINY_PARSING_REPO}/{PARSING_FILE}", role="parsing")),
    recogniser="dlib-resnet-v1",
    tiny=True,
    notes=_PULID_NOTES.format(side=TINY_EVA.image_size, blocks=TINY_EVA.hidden_blocks,
                              shape=(5, TINY_EVA.tokens, TINY_EVA.width)) + " (tiny twin: random weights)",
))
