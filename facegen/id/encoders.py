"""ID encoders: a face in an image → an IDEmbedding, each by its registry contract."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from facegen.errors import InvalidArgumentError, ModelNotFoundError
from facegen.faces.align import crop_template, warp_face
from facegen.faces.detect import FacePolicy, detect_faces, detect_faces_many, get_detector, select_faces
from facegen.faces.types import Face
from facegen.id.embedding import IDEmbedding, check_same_encoder
from facegen.id.registry import DEFAULT_ENCODER, EncoderSpec, get_encoder_spec
from facegen.onnx_runtime import create_session
from facegen.paths import models_dir as default_models_dir
from facegen.paths import check_sha256, require_licence

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    spec: EncoderSpec

    def embed(self, rgb: np.ndarray, face: Face) -> IDEmbedding: ...

    def detect(self, rgb: np.ndarray) -> list[Face]: ...


class DlibEncoder:
    """dlib's ResNet 128-D face descriptor on dlib's 5-point face chip (real, offline)."""

    def __init__(self, spec: EncoderSpec, num_jitters: int = 0) -> None:
        from facegen.faces.dlib_backend import (LANDMARKS_5, RESNET_DESCRIPTOR, _dlib,  # noqa: PLC0415
                                                dlib_model_path, shape_predictor)
        crop = crop_template(spec.template)
        if crop.template is not None:
            raise InvalidArgumentError(f"encoder '{spec.name}': dlib's descriptor aligns its own chip; "
                                       f"template '{spec.template}' is a warped crop")
        self.spec = spec
        self.num_jitters = num_jitters
        self.padding = crop.padding
        self._dlib = _dlib()
        self._sp5 = shape_predictor(LANDMARKS_5)
        self._net = self._dlib.face_recognition_model_v1(str(dlib_model_path(RESNET_DESCRIPTOR)))

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return detect_faces(rgb, backend=self.spec.detector)

    def embed(self, rgb: np.ndarray, face: Face) -> IDEmbedding:
        rgb = np.ascontiguousarray(rgb)
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        shape = self._sp5(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        vec = np.asarray(self._net.compute_face_descriptor(rgb, shape, self.num_jitters, self.padding), dtype=np.float32)
        return IDEmbedding(vec, self.spec.name, face=face)


class OnnxArcFaceEncoder:
    """An insightface-style ArcFace ONNX model: 112 ArcFace crop, RGB, (x − mean) / std."""

    def __init__(self, spec: EncoderSpec, models_dir: str | Path | None = None,
                 providers: str | Sequence[str] | None = None, accept_license: bool = False,
                 session_factory: Any = None, det_size: tuple[int, int] = (640, 640)) -> None:
        if not spec.commercial_use:
            require_licence(f"encoder '{spec.name}'", spec.licence, accept_license)
        self.spec = spec
        root = default_models_dir(models_dir)
        paths = [f.locate(root) for f in spec.files]
        missing = [f.relpath + (f" (or {', '.join(f.alternatives)})" if f.alternatives else "")
                   for f, p in zip(spec.files, paths) if p is None]
        if missing:
            sources = [f.url for f in spec.files if f.url]
            raise ModelNotFoundError(f"encoder '{spec.name}'", missing, root,
                                     hint=f"network: {spec.network}"
                                          + (f"; get it from {', '.join(sources)}" if sources else ""))
        self.path = paths[0]
        check_sha256(self.path, spec.files[0].sha256)
        self.session = create_session(self.path, providers, session_factory)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.mean, self.std = self._input_norm(spec)
        crop = crop_template(spec.template)
        if crop.template is None:
            raise InvalidArgumentError(f"encoder '{spec.name}': an ONNX encoder needs a warped crop "
                                       f"template, not '{spec.template}'")
        self.template = crop.template
        self._det_options = dict(pack=spec.detector_pack, models_dir=models_dir, det_size=det_size,
                                 providers=providers, accept_license=accept_license)
        if session_factory is not None:
            self._det_options["session_factory"] = session_factory

    def _input_norm(self, spec: EncoderSpec) -> tuple[float, float]:
        """insightface's ``ArcFaceONNX`` rule (:func:`graph_normalises_input`) on this file's graph;
        the registry's mean/std when the graph cannot be read."""
        try:
            import onnx  # noqa: PLC0415
            graph = onnx.load(str(self.path), load_external_data=False).graph
        except Exception:  # noqa: BLE001 - onnx absent or unreadable header: keep the contract's values
            logger.debug("could not inspect %s; using registry normalisation", self.path)
            return spec.mean, spec.std
        if graph_normalises_input([n.name for n in graph.node]):
            return 0.0, 1.0
        return spec.mean, spec.std

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return detect_faces(rgb, detector=get_detector(self.spec.detector, **self._det_options))

    def detect_many(self, rgbs: Sequence[np.ndarray]) -> list[list[Face]]:
        """Usable faces of each image (empty when none), SCRFD batched on the session when the
        exported model takes a batch (on the GPU with onnxruntime's CUDA provider)."""
        return detect_faces_many(rgbs, get_detector(self.spec.detector, **self._det_options))

    def preprocess(self, rgb: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        return self.preprocess_pairs([(rgb, f) for f in faces])

    def preprocess_pairs(self, pairs: Sequence[tuple[np.ndarray, Face]]) -> np.ndarray:
        """One NCHW float batch of aligned crops from (image, face) pairs of any images."""
        crops = [warp_face(rgb, f.kps, self.spec.crop_size, self.template)[0] for rgb, f in pairs]
        batch = np.stack(crops).astype(np.float32)
        if self.spec.color_order == "bgr":
            batch = batch[..., ::-1]
        batch = (batch - self.mean) / self.std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def embed_many(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[IDEmbedding]:
        return self.embed_batch([(rgb, f) for f in faces])

    def embed_batch(self, pairs: Sequence[tuple[np.ndarray, Face]]) -> list[IDEmbedding]:
        """Embed faces of several images in one session call (the batched path for dataset
        filters: one GPU launch per batch of generated images)."""
        if not pairs:
            return []
        out = self.session.run(None, {self.input_name: self.preprocess_pairs(pairs)})[0]
        return [IDEmbedding(np.asarray(v, dtype=np.float32), self.spec.name, face=f)
                for v, (_, f) in zip(out, pairs)]

    def embed(self, rgb: np.ndarray, face: Face) -> IDEmbedding:
        return self.embed_many(rgb, [face])[0]


class TorchIRSEEncoder(OnnxArcFaceEncoder):
    """InfiniteYou's contract: SCRFD keypoints (det size 640, then 320, then 160, as upstream),
    the 112 ArcFace crop in BGR scaled to [-1, 1], facexlib's IR-SE50 (:mod:`facegen.id.irse`)
    run in PyTorch, L2-normalised output."""

    DET_SIZES: tuple[tuple[int, int], ...] = ((640, 640), (320, 320), (160, 160))

    def __init__(self, spec: EncoderSpec, models_dir: str | Path | None = None,
                 providers: str | Sequence[str] | None = None, accept_license: bool = False,
                 session_factory: Any = None, det_size: tuple[int, int] = (640, 640)) -> None:
        from facegen.id.irse import load_irse  # noqa: PLC0415

        if not spec.commercial_use:
            require_licence(f"encoder '{spec.name}'", spec.licence, accept_license)
        self.spec = spec
        root = default_models_dir(models_dir)
        self.path = spec.files[0].locate(root)
        if self.path is None:
            f = spec.files[0]
            raise ModelNotFoundError(f"encoder '{spec.name}'", [f.relpath + f" (or {', '.join(f.alternatives)})"],
                                     root, hint=f"network: {spec.network}; get it from {f.url}")
        check_sha256(self.path, spec.files[0].sha256)
        self.model = load_irse(self.path, spec.crop_size)
        self.mean, self.std = spec.mean, spec.std
        self.template = crop_template(spec.template).template
        self._det_options = dict(pack=spec.detector_pack, models_dir=models_dir, det_size=det_size,
                                 providers=providers, accept_license=accept_license)
        if session_factory is not None:
            self._det_options["session_factory"] = session_factory

    def detect(self, rgb: np.ndarray) -> list[Face]:
        from facegen.errors import NoFaceError  # noqa: PLC0415

        for i, size in enumerate(self.DET_SIZES):
            try:
                return detect_faces(rgb, detector=get_detector(self.spec.detector, **{**self._det_options,
                                                                                     "det_size": size}))
            except NoFaceError:
                if i == len(self.DET_SIZES) - 1:
                    raise
        raise AssertionError("unreachable")

    def embed_batch(self, pairs: Sequence[tuple[np.ndarray, Face]]) -> list[IDEmbedding]:
        import torch  # noqa: PLC0415

        if not pairs:
            return []
        with torch.no_grad():
            out = self.model(torch.from_numpy(self.preprocess_pairs(pairs))).numpy()
        return [IDEmbedding(np.asarray(v, dtype=np.float32), self.spec.name, face=f) for v, (_, f) in zip(out, pairs)]


def graph_normalises_input(node_names: Sequence[str]) -> bool:
    """insightface ``ArcFaceONNX``'s test for a graph that normalises its own input (an MXNet
    export): among the **names** of the first 8 nodes, one starts with ``Sub`` or ``_minus`` and
    one with ``Mul`` or ``_mul``.  Names, not op types: a graph whose Sub/Mul nodes are named
    otherwise is fed (x − 127.5) / 127.5 by insightface, and so by facegen."""
    first = list(node_names)[:8]
    has_sub = any(n.startswith(("Sub", "_minus")) for n in first)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in first)
    return has_sub and has_mul


@functools.lru_cache(maxsize=8)
def _cached_encoder(name: str, models_dir: str | None, providers: Any, accept_license: bool) -> Encoder:
    spec = get_encoder_spec(name)
    if spec.backend == "dlib":
        return DlibEncoder(spec)
    if spec.backend == "torch-irse":
        return TorchIRSEEncoder(spec, models_dir, providers, accept_license)
    return OnnxArcFaceEncoder(spec, models_dir, providers, accept_license)


def get_encoder(name: str = DEFAULT_ENCODER, models_dir: str | Path | None = None,
                providers: str | Sequence[str] | None = None, accept_license: bool = False) -> Encoder:
    """The encoder registered as ``name``, loaded once per process and options."""
    prov = tuple(providers) if isinstance(providers, (list, tuple)) else providers
    return _cached_encoder(name, str(models_dir) if models_dir else None, prov, bool(accept_license))


def embed_image(rgb: np.ndarray, encoder: str | Encoder = DEFAULT_ENCODER,
                policy: "str | int | FacePolicy" = "largest", reference: IDEmbedding | None = None,
                models_dir: str | Path | None = None, accept_license: bool = False,
                providers: str | Sequence[str] | None = None) -> list[IDEmbedding]:
    """Detect, select (policy), align and embed the faces of an RGB image.

    ``most-similar`` needs ``reference`` (an embedding by the same encoder).
    """
    enc = encoder if not isinstance(encoder, str) else get_encoder(encoder, models_dir, providers, accept_license)
    faces = enc.detect(rgb)
    pol = FacePolicy.parse(policy)
    if pol.kind == "most-similar":
        if reference is None:
            raise InvalidArgumentError("the most-similar face policy needs a reference embedding")
        embs = [enc.embed(rgb, f) for f in faces]
        scores = [similarity(reference, e) for e in embs]
        return [embs[int(np.argmax(scores))]]
    return [enc.embed(rgb, f) for f in select_faces(faces, pol)]


def similarity(a: IDEmbedding, b: IDEmbedding) -> float:
    """Similarity in the encoder's own metric (higher = more alike).

    Cosine for ArcFace networks; ``1 − Euclidean distance`` for dlib, whose vectors are not
    centred (raw cosine between strangers is ~0.8 there). Mixed encoders are refused.
    """
    name = check_same_encoder([a, b])
    spec = get_encoder_spec(name)
    if spec.metric == "euclidean":
        return float(1.0 - np.linalg.norm(a.vector - b.vector))
    na, nb = a.norm, b.norm
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a.vector, b.vector) / (na * nb))


def same_person(a: IDEmbedding, b: IDEmbedding) -> tuple[bool, float, float]:
    """(same, similarity, threshold) by the encoder's registry threshold."""
    s = similarity(a, b)
    thr = get_encoder_spec(a.encoder).threshold
    return s >= thr, s, thr
