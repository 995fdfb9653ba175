"""ID encoders: aligned face crops → vectors, each by its registry contract; and the face
front door of each entry (:func:`get_analyzer`: its detector → selection → its template → its network)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from facegen.errors import InvalidArgumentError, ModelNotFoundError
from facegen.faces.align import crop_template
from facegen.faces.analyzer import FaceAnalyzer, WarpAligner
from facegen.faces.detect import FacePolicy, get_detector
from facegen.id.embedding import IDEmbedding, check_same_encoder
from facegen.id.registry import DEFAULT_ENCODER, EncoderSpec, get_encoder_spec
from facegen.onnx_runtime import create_session
from facegen.paths import DEFAULT_ACCESS, ModelAccess, check_sha256

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """An encoder entry's network: aligned RGB crops → ``(N, D)`` vectors (nothing else)."""

    spec: EncoderSpec

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


#: what :func:`get_analyzer` gives: the face front door of one encoder entry
Analyzer = FaceAnalyzer[IDEmbedding]


class DlibEncoder:
    """dlib's ResNet 128-D face descriptor of dlib's aligned face chip (real, offline)."""

    def __init__(self, spec: EncoderSpec, num_jitters: int = 0) -> None:
        from facegen.faces.dlib_backend import RESNET_DESCRIPTOR, load_dlib, dlib_model_path  # noqa: PLC0415

        crop = crop_template(spec.template)
        if crop.template is not None:
            raise InvalidArgumentError(f"encoder '{spec.name}': dlib's descriptor aligns its own chip; "
                                       f"template '{spec.template}' is a warped crop")
        self.spec = spec
        self.num_jitters = num_jitters
        self.padding = crop.padding
        self._net = load_dlib().face_recognition_model_v1(str(dlib_model_path(RESNET_DESCRIPTOR)))

    def aligner(self) -> Any:
        from facegen.faces.dlib_backend import DlibChipAligner  # noqa: PLC0415

        return DlibChipAligner(self.spec.crop_size, self.padding)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(c), self.num_jitters),
                                    dtype=np.float32) for c in crops])


def _named(f: Any) -> str:
    return f.relpath + (f" (or {', '.join(f.alternatives)})" if f.alternatives else "")


def missing_files(spec: EncoderSpec, access: ModelAccess = DEFAULT_ACCESS) -> list[str]:
    """The files under the models folder the entry still needs: its network and its detector
    pack's detector (what ``facegen doctor`` and a preset's missing-weights message list).  The
    dlib entry's files come with its package: none."""
    if spec.backend == "dlib" or spec.tiny:
        return []
    root = access.root
    missing = [_named(f) for f in spec.files if f.locate(root) is None]
    if spec.recogniser is not None:
        missing += [m for m in missing_files(get_encoder_spec(spec.recogniser), access) if m not in missing]
        return missing
    if spec.detector_pack:
        from facegen.faces.insightface_backend import PACK_DETECTORS  # noqa: PLC0415
        det = f"{spec.detector_pack}/{PACK_DETECTORS.get(spec.detector_pack, 'scrfd_*.onnx')}"
        if not (root / det).is_file():
            missing.append(det)
    return missing


def network_files(spec: EncoderSpec, access: ModelAccess) -> dict[str, Path]:
    """The entry's network files by role: its licence accepted, found in the models folder (every
    missing file named, with where to get it; a tiny entry's are built under the tiny cache) and
    their sha256 checked where the registry pins one."""
    if not spec.commercial_use:
        access.require(f"encoder '{spec.name}'", spec.licence)
    if spec.tiny:
        from facegen.models.tiny import ensure_repo, tiny_root  # noqa: PLC0415
        root = tiny_root()
        for repo in dict.fromkeys("/".join(f.relpath.split("/")[:2]) for f in spec.files):
            ensure_repo(repo, root)
    else:
        root = access.root
    paths = [f.locate(root) for f in spec.files]
    missing = [_named(f) for f, p in zip(spec.files, paths) if p is None]
    if missing:
        sources = [f.url for f in spec.files if f.url]
        raise ModelNotFoundError(f"encoder '{spec.name}'", missing, root,
                                 hint=f"network: {spec.network}" + (f"; get it from {', '.join(sources)}" if sources else ""))
    for f, p in zip(spec.files, paths):
        check_sha256(p, f.sha256)           # type: ignore[arg-type]
    return {f.role: p for f, p in zip(spec.files, paths)}  # type: ignore[misc]


def network_file(spec: EncoderSpec, access: ModelAccess) -> Path:
    """The entry's (first) network file, as :func:`network_files` finds it."""
    return next(iter(network_files(spec, access).values()))


class OnnxArcFaceEncoder:
    """An insightface-style ArcFace ONNX model on its entry's aligned crop, (x − mean) / std."""

    def __init__(self, spec: EncoderSpec, access: ModelAccess = DEFAULT_ACCESS,
                 providers: str | Sequence[str] | None = None, session_factory: Any = None) -> None:
        self.spec = spec
        self.path = network_file(spec, access)
        crop = crop_template(spec.template)
        if crop.template is None:
            raise InvalidArgumentError(f"encoder '{spec.name}': an ONNX encoder needs a warped crop "
                                       f"template, not '{spec.template}'")
        self.template = crop.template
        self.session = create_session(self.path, providers, session_factory)
        self.input_name = self.session.get_inputs()[0].name
        self.mean, self.std = self._input_norm(spec)

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

    def aligner(self) -> WarpAligner:
        return WarpAligner(self.template, self.spec.crop_size)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """One NCHW float batch of aligned RGB crops, in the network's colour order and scale."""
        batch = np.stack(crops).astype(np.float32)
        if self.spec.color_order == "bgr":
            batch = batch[..., ::-1]
        batch = (batch - self.mean) / self.std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """All crops in one session call (one GPU launch per batch of faces)."""
        return np.asarray(self.session.run(None, {self.input_name: self.preprocess(crops)})[0], dtype=np.float32)


class TorchIRSEEncoder(OnnxArcFaceEncoder):
    """InfiniteYou's contract: the 112 ArcFace crop in BGR scaled to [-1, 1], facexlib's IR-SE50
    (:mod:`facegen.id.irse`) run in PyTorch, L2-normalised output.  Its detector is SCRFD at
    det size 640, then 320, then 160, as upstream (:data:`DET_SIZES`, :class:`SizeFallbackDetector`)."""

    DET_SIZES: tuple[tuple[int, int], ...] = ((640, 640), (320, 320), (160, 160))

    def __init__(self, spec: EncoderSpec, access: ModelAccess = DEFAULT_ACCESS,
                 providers: str | Sequence[str] | None = None, session_factory: Any = None) -> None:
        from facegen.id.irse import load_irse  # noqa: PLC0415

        self.spec = spec
        self.path = network_file(spec, access)
        self.model = load_irse(self.path, spec.crop_size)
        self.mean, self.std = spec.mean, spec.std
        self.template = crop_template(spec.template).template

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        import torch  # noqa: PLC0415

        with torch.no_grad():
            return self.model(torch.from_numpy(self.preprocess(crops))).numpy().astype(np.float32)


class IResNetRunEncoder:
    """A trained run (``facegen fr-train``): its IResNet on the entry's aligned crop, resized to the
    run's input size, (x − mean) / std in the run's colour order; raw embeddings."""

    def __init__(self, spec: EncoderSpec) -> None:
        from facegen.id.iresnet import load_run  # noqa: PLC0415

        self.spec = spec
        self.model, self.config = load_run(spec.path)          # type: ignore[arg-type]
        self.template = crop_template(spec.template).template
        self.input_size = int(self.config["input_size"])

    def aligner(self) -> WarpAligner:
        return WarpAligner(self.template, self.spec.crop_size)     # type: ignore[arg-type]

    def preprocess(self, crops: Sequence[np.ndarray]) -> Any:
        import torch  # noqa: PLC0415

        x = torch.from_numpy(np.stack(crops).astype(np.float32)).permute(0, 3, 1, 2)
        if self.spec.color_order == "bgr":
            x = x.flip(1)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                antialias=True, align_corners=False)
        return (x - self.spec.mean) / self.spec.std

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        import torch  # noqa: PLC0415

        with torch.inference_mode():
            return self.model(self.preprocess(crops)).numpy().astype(np.float32)


class SizeFallbackDetector:
    """Detectors tried in turn until one finds a face (upstream InfiniteYou's 640 → 320 → 160)."""

    def __init__(self, detectors: Sequence[Any]) -> None:
        self.detectors = list(detectors)
        self.name = self.detectors[0].name

    def detect(self, rgb: np.ndarray) -> list[Any]:
        for det in self.detectors:
            faces = det.detect(rgb)
            if faces:
                return faces
        return []


def graph_normalises_input(node_names: Sequence[str]) -> bool:
    """insightface ``ArcFaceONNX``'s test for a graph that normalises its own input (an MXNet
    export): among the **names** of the first 8 nodes, one starts with ``Sub`` or ``_minus`` and
    one with ``Mul`` or ``_mul``.  Names, not op types: a graph whose Sub/Mul nodes are named
    otherwise is fed (x − 127.5) / 127.5 by insightface, and so by facegen."""
    first = list(node_names)[:8]
    has_sub = any(n.startswith(("Sub", "_minus")) for n in first)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in first)
    return has_sub and has_mul


def build_analyzer(spec: EncoderSpec, access: ModelAccess = DEFAULT_ACCESS,
                   providers: str | Sequence[str] | None = None, session_factory: Any = None,
                   det_size: tuple[int, int] = (640, 640)) -> Analyzer:
    """The face front door of an encoder entry: its detector, its template, its network."""
    embedder: DlibEncoder | OnnxArcFaceEncoder | IResNetRunEncoder
    if spec.backend == "eva-composite":
        return _pulid_analyzer(spec, access, providers, session_factory, det_size)
    if spec.backend == "dlib":
        embedder = DlibEncoder(spec)
        detector: Any = functools.partial(get_detector, spec.detector)
    elif spec.backend == "torch-iresnet":
        embedder = IResNetRunEncoder(spec)
        detector = functools.partial(get_detector, spec.detector, **(
            {} if spec.detector == "dlib" else dict(pack=spec.detector_pack, access=access, det_size=det_size,
                                                   providers=providers)))
    else:
        options: dict[str, Any] = dict(pack=spec.detector_pack, access=access, det_size=det_size,
                                       providers=providers)
        if session_factory is not None:
            options["session_factory"] = session_factory
        if spec.backend == "torch-irse":
            embedder = TorchIRSEEncoder(spec, access, providers)
            sizes = TorchIRSEEncoder.DET_SIZES
            detector = lambda: SizeFallbackDetector(  # noqa: E731
                [get_detector(spec.detector, **{**options, "det_size": size}) for size in sizes])
        else:
            embedder = OnnxArcFaceEncoder(spec, access, providers, session_factory)
            detector = functools.partial(get_detector, spec.detector, **options)
    name = spec.name
    return FaceAnalyzer(name, detector, embedder.aligner(), embedder,
                        make=lambda v, face: IDEmbedding(np.asarray(v, dtype=np.float32), name, face=face),
                        similarity=similarity, spec=spec)


def _pulid_analyzer(spec: EncoderSpec, access: ModelAccess, providers: Any, session_factory: Any,
                    det_size: tuple[int, int]) -> Analyzer:
    """A ``pulid`` entry's front door: its recogniser entry's detector and network, and the EVA path
    (:mod:`facegen.id.pulid`) on the same faces."""
    from facegen.id.pulid import PulidAnalyzer, PulidEncoder  # noqa: PLC0415

    if spec.recogniser is None:
        raise InvalidArgumentError(f"encoder '{spec.name}' names no recogniser entry")
    files = network_files(spec, access)
    inner = build_analyzer(get_encoder_spec(spec.recogniser), access, providers, session_factory, det_size)
    embedder = PulidEncoder(spec, inner.embedder, inner.aligner, files["eva"], files["parsing"])
    name = spec.name
    return PulidAnalyzer(name, lambda: inner.detector, embedder.aligner(), embedder,
                         make=lambda v, face: IDEmbedding(np.asarray(v, dtype=np.float32), name, face=face),
                         similarity=similarity, spec=spec)


@functools.lru_cache(maxsize=8)
def _cached_analyzer(name: str, access: ModelAccess, providers: Any, stamp: Any = None) -> Analyzer:
    return build_analyzer(get_encoder_spec(name), access, providers)


def get_analyzer(name: str = DEFAULT_ENCODER, access: ModelAccess = DEFAULT_ACCESS,
                 providers: str | Sequence[str] | None = None) -> Analyzer:
    """The face front door of the encoder registered as ``name``, loaded once per process and options."""
    prov = tuple(providers) if isinstance(providers, (list, tuple)) else providers
    spec = get_encoder_spec(name)      # a trained run: its folder's absolute path, its weights' version
    stamp = (Path(spec.path) / "model.safetensors").stat().st_mtime_ns if spec.path else None
    key = ModelAccess(access.models_dir, access.accept_license)    # analyzers do not depend on the device
    return _cached_analyzer(spec.name, key, prov, stamp)


def embed_image(rgb: np.ndarray, encoder: str | Analyzer = DEFAULT_ENCODER,
                policy: "str | int | FacePolicy" = "largest", reference: IDEmbedding | None = None,
                access: ModelAccess = DEFAULT_ACCESS,
                providers: str | Sequence[str] | None = None) -> list[IDEmbedding]:
    """Detect, select (policy), align and embed the faces of an RGB image (``most-similar``
    needs ``reference``, an embedding by the same encoder)."""
    analyzer = encoder if not isinstance(encoder, str) else get_analyzer(encoder, access, providers)
    return analyzer.analyze(rgb, policy, reference)


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
