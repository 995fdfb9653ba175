"""insightface SCRFD backend and ArcFace ONNX encoders, with fake onnxruntime sessions (no weights)."""

from types import SimpleNamespace

import numpy as np
import pytest

from facegen.errors import LicenseNotAcceptedError, ModelNotFoundError
from facegen.faces.align import warp_face
from facegen.faces.insightface_backend import SCRFDDetector, anchor_centers, nms
from facegen.faces.types import Face
from facegen.id.encoders import OnnxArcFaceEncoder, build_analyzer
from facegen.id.registry import get_encoder_spec
from facegen.paths import ModelAccess


class FakeSession:
    """Stands in for onnxruntime.InferenceSession: records inputs, returns scripted outputs."""

    def __init__(self, path, providers, n_outputs, input_shape, respond):
        self.path, self.providers = path, providers
        self._outputs = [SimpleNamespace(name=f"out{i}") for i in range(n_outputs)]
        self._inputs = [SimpleNamespace(name="input.1", shape=input_shape)]
        self.respond = respond
        self.calls = []

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def get_providers(self):
        return self.providers

    def run(self, names, feeds):
        self.calls.append(feeds)
        return self.respond(feeds)


def _write_pack(root, pack, files):
    d = root / pack
    d.mkdir(parents=True, exist_ok=True)
    for f in files:
        (d / f).write_bytes(b"not a real model")
    return d


def scrfd_outputs(face_center, dist, kps_off, stride=16, det=(640, 640)):
    """9 SCRFD outputs (3 strides × scores/boxes/kps, 2 anchors) holding one face."""
    outs = {}
    for i, s in enumerate((8, 16, 32)):
        n = (det[0] // s) * (det[1] // s) * 2
        outs[i] = np.zeros((n, 1), np.float32)
        outs[i + 3] = np.zeros((n, 4), np.float32)
        outs[i + 6] = np.zeros((n, 10), np.float32)
    centers = anchor_centers(det[1] // stride, det[0] // stride, stride, 2)
    idx = int(np.where((centers == face_center).all(1))[0][0])
    k = (8, 16, 32).index(stride)
    outs[k][idx] = 0.9
    outs[k + 3][idx] = np.array(dist) / stride
    outs[k + 6][idx] = np.array(kps_off).reshape(-1) / stride
    return [outs[i] for i in range(9)]


def test_scrfd_decodes_boxes_and_keypoints_in_image_pixels(tmp_path):
    _write_pack(tmp_path, "antelopev2", ["scrfd_10g_bnkps.onnx"])
    center = np.array([192.0, 160.0])
    dist = [32, 48, 32, 48]
    kps_off = [[-12, -10], [12, -10], [0, 0], [-10, 16], [10, 16]]
    seen = {}

    def factory(path, providers):
        def respond(feeds):
            seen["blob"] = feeds["input.1"]
            return scrfd_outputs(center, dist, kps_off)
        return FakeSession(path, providers, 9, [1, 3, 640, 640], respond)

    det = SCRFDDetector("antelopev2", ModelAccess(tmp_path, accept_license=True), det_size=(640, 640),
                        session_factory=factory)
    img = np.zeros((960, 1280, 3), np.uint8)
    img[..., 0] = 255                               # pure red image: RGB order must reach the model
    faces = det.detect(img)
    assert len(faces) == 1
    # letterbox 1280x960 -> 640x480, scale 0.5
    assert np.allclose(faces[0].bbox, [(192 - 32) * 2, (160 - 48) * 2, (192 + 32) * 2, (160 + 48) * 2])
    assert np.allclose(faces[0].kps, (center + np.array(kps_off)) * 2)
    blob = seen["blob"]
    assert blob.shape == (1, 3, 640, 640)
    assert blob[0, 0, 0, 0] == pytest.approx((255 - 127.5) / 128)   # channel 0 = R
    assert blob[0, 2, 0, 0] == pytest.approx((0 - 127.5) / 128)
    assert blob[0, 0, 600, 0] == pytest.approx(-127.5 / 128)          # padding below the image


@pytest.mark.parametrize("batched", [True, False])
def test_scrfd_detects_a_batch_in_one_call_when_the_model_takes_one(tmp_path, batched):
    """Issue 7, front end in dataset mode: generated images detected together (GPU-friendly)."""
    _write_pack(tmp_path, "antelopev2", ["scrfd_10g_bnkps.onnx"])
    kps_off = [[-12, -10], [12, -10], [0, 0], [-10, 16], [10, 16]]
    centers = [np.array([192.0, 160.0]), np.array([320.0, 336.0])]
    calls = []

    def factory(path, providers):
        def respond(feeds):
            blob = feeds["input.1"]
            calls.append(blob.shape[0])
            # each image says where its face is by its red level (the fake "sees" the pixels)
            per = [scrfd_outputs(centers[int(b[0, 0, 0] > 0)], [32, 48, 32, 48], kps_off) for b in blob]
            if not batched:
                assert blob.shape[0] == 1
                return per[0]
            return [np.stack([p[i] for p in per]) for i in range(9)]
        return FakeSession(path, providers, 9, [None if batched else 1, 3, 640, 640], respond)

    det = SCRFDDetector("antelopev2", ModelAccess(tmp_path, accept_license=True), det_size=(640, 640),
                        session_factory=factory)
    images = []
    for i, size in enumerate([(640, 640), (960, 1280), (640, 640)]):
        img = np.zeros((*size, 3), np.uint8)
        img[..., 0] = 255 * (i % 2)
        images.append(img)
    many = det.detect_batch(images)
    assert calls == ([3] if batched else [1, 1, 1])
    single = [det.detect(img) for img in images]
    assert [len(f) for f in many] == [1, 1, 1]
    for a, b in zip(many, single):
        assert np.allclose(a[0].bbox, b[0].bbox) and np.allclose(a[0].kps, b[0].kps)
    assert np.allclose(many[1][0].bbox, [(320 - 32) * 2, (336 - 48) * 2, (320 + 32) * 2, (336 + 48) * 2])


def test_scrfd_needs_licence_and_files(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEGEN_ACCEPT_NONCOMMERCIAL", raising=False)
    with pytest.raises(LicenseNotAcceptedError, match="non-commercial"):
        SCRFDDetector("antelopev2", ModelAccess(tmp_path))
    with pytest.raises(ModelNotFoundError, match="scrfd_10g_bnkps.onnx") as err:
        SCRFDDetector("antelopev2", ModelAccess(tmp_path, accept_license=True))
    assert str(tmp_path / "antelopev2") in str(err.value)


def test_nms_keeps_best_of_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.4) == [1, 2]


@pytest.mark.parametrize("name,pack", [("antelopev2-glintr100", "antelopev2"),
                                       ("buffalo_l-w600k-r50", "buffalo_l")])
def test_arcface_encoder_preprocessing_and_routing(tmp_path, name, pack):
    spec = get_encoder_spec(name)
    _write_pack(tmp_path, pack, [spec.files[0].relpath.split("/")[1]])
    fed = {}

    def factory(path, providers):
        def respond(feeds):
            fed["x"] = feeds["input.1"]
            return [np.tile(np.arange(512, dtype=np.float32), (feeds["input.1"].shape[0], 1))]
        return FakeSession(path, providers, 1, [None, 3, 112, 112], respond)

    enc = build_analyzer(spec, ModelAccess(tmp_path, accept_license=True), session_factory=factory)
    assert enc.embedder.path == tmp_path / spec.files[0].relpath
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    kps = np.array([[120, 130], [180, 130], [150, 165], [125, 200], [175, 200]], np.float32)
    face = Face(np.array([90, 90, 210, 230], np.float32), kps, 0.9)
    emb = enc.embed(img, face)
    assert emb.encoder == name and emb.dim == 512 and emb.face is face
    assert np.allclose(emb.vector, np.arange(512))          # raw, not normalised
    crop, _ = warp_face(img, kps, 112, "arcface")
    x = fed["x"]
    assert x.shape == (1, 3, 112, 112) and x.dtype == np.float32
    assert np.allclose(x[0].transpose(1, 2, 0), (crop.astype(np.float32) - 127.5) / 127.5)  # RGB, [-1, 1]


def test_arcface_encoder_missing_file_names_file_and_folder(tmp_path):
    spec = get_encoder_spec("arc2face-arcface")
    with pytest.raises(ModelNotFoundError) as err:
        OnnxArcFaceEncoder(spec, ModelAccess(tmp_path, accept_license=True))
    assert "arc2face/arcface.onnx" in str(err.value) and str(tmp_path) in str(err.value)


def test_arcface_encoder_refuses_without_licence(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEGEN_ACCEPT_NONCOMMERCIAL", raising=False)
    with pytest.raises(LicenseNotAcceptedError):
        OnnxArcFaceEncoder(get_encoder_spec("buffalo_l-w600k-r50"), ModelAccess(tmp_path))
    monkeypatch.setenv("FACEGEN_ACCEPT_NONCOMMERCIAL", "1")
    with pytest.raises(ModelNotFoundError):                 # accepted via env: now it looks for files
        OnnxArcFaceEncoder(get_encoder_spec("buffalo_l-w600k-r50"), ModelAccess(tmp_path))


def test_pinned_checksum_mismatch_is_refused(tmp_path):
    import dataclasses

    from facegen.id.registry import WeightFile
    spec = get_encoder_spec("buffalo_l-w600k-r50")
    _write_pack(tmp_path, "buffalo_l", ["w600k_r50.onnx"])
    pinned = dataclasses.replace(spec, files=(WeightFile("buffalo_l/w600k_r50.onnx", sha256="0" * 64),))
    with pytest.raises(ModelNotFoundError, match="sha256"):
        OnnxArcFaceEncoder(pinned, ModelAccess(tmp_path, accept_license=True),
                           session_factory=lambda p, providers: FakeSession(p, providers, 1, [1, 3, 112, 112], None))


def test_inswapper_routing_and_preprocessing(tmp_path, tom_hanks_path):
    from facegen.errors import ConsentRequiredError, EncoderMismatchError
    from facegen.faces import detect_faces
    from facegen.id import IDEmbedding
    from facegen.io import load_image
    from facegen.pipelines.inswapper import InswapperSwapPipeline, find_inswapper, source_latent

    with pytest.raises(ModelNotFoundError, match="inswapper_128.onnx"):
        find_inswapper(ModelAccess(tmp_path))
    (tmp_path / "inswapper_128.onnx").write_bytes(b"fake")
    rng = np.random.default_rng(0)
    emap = rng.normal(size=(512, 512)).astype(np.float32)
    fed = {}

    def factory(path, providers):
        sess = FakeSession(path, providers, 1, [1, 3, 128, 128], None)
        sess._inputs = [SimpleNamespace(name="target"), SimpleNamespace(name="source")]

        def respond(feeds):
            fed.update(feeds)
            return [np.full((1, 3, 128, 128), 0.5, np.float32)]   # a flat grey "face"
        sess.respond = respond
        return sess

    class DlibAsBuffalo:                    # detection + a buffalo_l-labelled vector, no weights needed
        def detect(self, rgb):
            return detect_faces(rgb)

        def embed(self, rgb, face):
            return IDEmbedding(rng.normal(size=512), "buffalo_l-w600k-r50", face=face)

    pipe = InswapperSwapPipeline(ModelAccess(tmp_path, accept_license=True), session_factory=factory, emap=emap,
                                 encoder=DlibAsBuffalo())
    with pytest.raises(ConsentRequiredError):
        pipe(tom_hanks_path, tom_hanks_path)
    src = IDEmbedding(rng.normal(size=512), "buffalo_l-w600k-r50")
    from PIL import Image
    canvas = np.full((360, 360, 3), 200, np.uint8)
    canvas[120:232, 120:232] = load_image(tom_hanks_path)
    target = tmp_path / "target.png"
    Image.fromarray(canvas).save(target)
    out = pipe(src, target, consent=True)
    lat = fed["source"]
    assert lat.shape == (1, 512) and np.isclose(np.linalg.norm(lat), 1.0)
    assert np.allclose(lat, source_latent(src, emap))
    assert fed["target"].shape == (1, 3, 128, 128) and 0 <= fed["target"].min() and fed["target"].max() <= 1
    before, after = canvas, out.rgb(0)
    assert after.shape == before.shape and np.any(after[120:232, 120:232] != before[120:232, 120:232])
    assert np.array_equal(after[:60], before[:60]) and np.array_equal(after[300:], before[300:])  # untouched
    with pytest.raises(EncoderMismatchError, match="buffalo_l"):
        source_latent(IDEmbedding(rng.normal(size=512), "antelopev2-glintr100"), emap)


def test_arc2face_encoder_found_in_hub_layout(tmp_path):
    spec = get_encoder_spec("arc2face-arcface")
    hub = tmp_path / "FoivosPar" / "Arc2Face"
    hub.mkdir(parents=True)
    (hub / "arcface.onnx").write_bytes(b"fake")
    enc = OnnxArcFaceEncoder(spec, ModelAccess(tmp_path, accept_license=True),
                             session_factory=lambda p, providers: FakeSession(p, providers, 1, [1, 3, 112, 112], None))
    assert enc.path == hub / "arcface.onnx"


def test_dataset_filter_embeds_a_batch_of_images_in_one_call(tmp_path, monkeypatch):
    """Issue 7, front end in dataset mode: faces of many generated images, one session call."""
    from facegen.dataset.filters import EncoderEmbedFn
    import facegen.id.encoders as encoders

    spec = get_encoder_spec("buffalo_l-w600k-r50")
    _write_pack(tmp_path, "buffalo_l", ["w600k_r50.onnx"])
    calls = []

    def factory(path, providers):
        def respond(feeds):
            x = feeds["input.1"]
            calls.append(x.shape[0])
            return [x.reshape(x.shape[0], -1)[:, :512] * 10]     # depends on each crop
        return FakeSession(path, providers, 1, [None, 3, 112, 112], respond)

    enc = build_analyzer(spec, ModelAccess(tmp_path, accept_license=True), session_factory=factory)
    rng = np.random.default_rng(0)
    kps = np.array([[120, 130], [180, 130], [150, 165], [125, 200], [175, 200]], np.float32)
    face = Face(np.array([90, 90, 210, 230], np.float32), kps, 0.9)
    monkeypatch.setattr(enc, "detect", lambda rgb: [] if rgb.mean() < 1 else [face])
    monkeypatch.setattr(enc, "detect_many", lambda rgbs: [enc.detect(rgb) for rgb in rgbs])
    monkeypatch.setattr(encoders, "get_analyzer", lambda *a, **k: enc)
    images = [rng.integers(1, 256, (300, 300, 3), dtype=np.uint8) for _ in range(4)]
    images.insert(2, np.zeros((300, 300, 3), np.uint8))               # no face in this one
    out = EncoderEmbedFn(spec.name).embed_many(images)
    assert calls == [4]                                                 # one batched call
    assert out[2] is None and all(e is not None for i, e in enumerate(out) if i != 2)
    single = enc.embed(images[3], face)
    assert np.allclose(out[3].vector, single.vector)


def test_detect_faces_many_keeps_usable_faces_in_reading_order():
    from facegen.faces.detect import detect_faces_many

    def face(x, size):
        return Face(np.array([x, 10, x + size, 10 + size], np.float32), np.zeros((5, 2), np.float32), 0.9)

    class Batched:
        name = "fake"
        calls = 0

        def detect_batch(self, rgbs):
            self.calls += 1
            return [[face(200, 80), face(10, 80), face(400, 5)], [], [face(0, 4)]]

    det = Batched()
    found = detect_faces_many([np.zeros((8, 8, 3), np.uint8)] * 3, det)
    assert det.calls == 1
    assert [[float(f.bbox[0]) for f in faces] for faces in found] == [[10.0, 200.0], [], []]
