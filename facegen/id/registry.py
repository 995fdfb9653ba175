"""The ID-encoder registry: one frozen entry per recognition network, with its contract.

Released adapter weights were each trained on one recognition network
(../shared/reference/compat.md, section 0).  An entry says how to run the network
(detector, alignment template, crop size, colour order, mean/std) and how its vectors are
used (dimension, whether adapters expect unit-norm or raw vectors, how two vectors are
compared and the threshold for "same person"), plus its licence and weight files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facegen.errors import InvalidArgumentError


@dataclass(frozen=True)
class WeightFile:
    """A weight file an entry needs, relative to the models directory.

    ``alternatives`` are other accepted places (e.g. the hub layout of the repository that
    ships it), tried in order after ``relpath``.
    """

    relpath: str
    sha256: str | None = None
    url: str | None = None  # where a user fetches it (hub repo/file), for the error message
    alternatives: tuple[str, ...] = ()

    def locate(self, root: "Path") -> "Path | None":
        """The first existing candidate under ``root``, else None."""
        for rel in (self.relpath, *self.alternatives):
            if (root / rel).is_file():
                return root / rel
        return None


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    network: str
    backend: Literal["dlib", "onnx"]
    detector: str                 # detector backend name (facegen.faces)
    template: str                 # alignment template name (facegen.faces.align.TEMPLATES)
    crop_size: int
    color_order: Literal["rgb", "bgr"]
    mean: float
    std: float
    dim: int
    adapter_normalised: bool      # adapters trained on it expect unit-norm vectors
    metric: Literal["cosine", "euclidean"]
    threshold: float              # on `similarity`: same person when similarity >= threshold
    licence: str
    commercial_use: bool
    files: tuple[WeightFile, ...] = ()
    detector_pack: str | None = None   # insightface pack whose detector it pairs with
    notes: str = ""
    typical_norm: float | None = None  # mean raw-vector norm on real faces, when measured


ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    if spec.name in ENCODERS:
        raise InvalidArgumentError(f"encoder '{spec.name}' is already registered")
    ENCODERS[spec.name] = spec
    return spec


def get_encoder_spec(name: str) -> EncoderSpec:
    try:
        return ENCODERS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown encoder '{name}'; choose one of: {', '.join(sorted(ENCODERS))}") from None


DEFAULT_ENCODER = "dlib-resnet-v1"

_INSIGHTFACE_LICENCE = "insightface pretrained packs: non-commercial research use only"

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
    adapter_normalised=False,
    metric="euclidean",
    # dlib's own rule is Euclidean distance < 0.6; similarity = 1 - distance.
    threshold=0.4,
    licence="dlib models: Boost Software License / CC0 (face_recognition_models)",
    commercial_use=True,
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
    adapter_normalised=False,
    metric="cosine",
    threshold=0.3,
    licence=_INSIGHTFACE_LICENCE,
    commercial_use=False,
    files=(WeightFile("antelopev2/glintr100.onnx"),),
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
    adapter_normalised=True,
    metric="cosine",
    threshold=0.3,
    licence=_INSIGHTFACE_LICENCE,
    commercial_use=False,
    files=(WeightFile("buffalo_l/w600k_r50.onnx"),),
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
    adapter_normalised=True,
    metric="cosine",
    threshold=0.3,
    licence="Arc2Face weights: CC BY-NC 4.0 style research licence (see FoivosPar/Arc2Face); "
            "detector from insightface antelopev2 (non-commercial)",
    commercial_use=False,
    files=(WeightFile("arc2face/arcface.onnx", url="FoivosPar/Arc2Face:arcface.onnx",
                      alternatives=("FoivosPar/Arc2Face/arcface.onnx", "antelopev2/arcface.onnx")),),
    detector_pack="antelopev2",
    notes="Arc2Face L2-normalises the vector before the id-token substitution",
))
