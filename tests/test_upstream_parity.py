"""Behaviour the upstream implementations have on the released weights (issue 11).

The references below are re-implemented in the test from ../shared/reference/compat.md and the
upstream sources (InstantID ``resize_img``/``draw_kps``, insightface ``ArcFaceONNX`` and
``INSwapper.get(paste_back=True)``), not taken from facegen's code.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from facegen.id.embedding import IDEmbedding
from facegen.models.registry import PRESETS, TINY_PIXEL_MULTIPLE, get_preset, list_presets, tiny_twin
from facegen.paths import ModelAccess
from facegen.pipelines.generation import IDGenerationPipeline


def emb(seed: int, dim: int = 128) -> IDEmbedding:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return IDEmbedding(0.6 * v / np.linalg.norm(v), "dlib-resnet-v1")


def pixels(out) -> np.ndarray:
    return np.asarray(out.images[0].convert("RGB")).astype(np.int16)


def lcm_lora_file():
    from facegen.models.resolve import resolve_preset

    return resolve_preset(get_preset("tiny-arc2face-lcm")).file("lcm_lora")


# ----------------------------------------------------------------------------- 1, 2: LoRA + fast path, twins

def test_fast_path_keeps_the_lcm_lora_of_the_tiny_twin():
    fast = IDGenerationPipeline.from_preset("tiny-arc2face-lcm", device="cpu")
    plain = IDGenerationPipeline.from_preset("tiny-arc2face-lcm", device="cpu", fast_path=False)
    assert "lcm" in fast.pipe.unet.peft_config
    a = pixels(fast(id_embeds=[emb(1)], seed=3, progress=False))
    b = pixels(plain(id_embeds=[emb(1)], seed=3, progress=False))
    assert np.abs(a - b).max() <= 1                       # float rounding only
    plain.pipe.unload_lora_weights()
    c = pixels(plain(id_embeds=[emb(1)], seed=3, progress=False))
    assert np.abs(b - c).mean() > 5                       # the LoRA visibly acts ...
    assert np.abs(a - c).mean() > 5                       # ... on the fast path too


def test_a_lora_loaded_after_fusing_still_acts():
    from facegen.speed.config import FastPathConfig
    from facegen.speed.engine import applied_options

    pipe = IDGenerationPipeline.from_preset("tiny", device="cpu", fast_path=FastPathConfig())
    assert "unet fused qkv" in applied_options(pipe.pipe).applied
    before = pixels(pipe(id_embeds=[emb(2)], seed=5, progress=False))
    ref = IDGenerationPipeline.from_preset("tiny", device="cpu", fast_path=False)
    f = lcm_lora_file()
    for p in (pipe, ref):
        p.pipe.load_lora_weights(str(f.parent), weight_name=f.name, adapter_name="user")
    after = pixels(pipe(id_embeds=[emb(2)], seed=5, progress=False))
    expected = pixels(ref(id_embeds=[emb(2)], seed=5, progress=False))
    assert np.abs(after - before).mean() > 5
    assert np.abs(after - expected).max() <= 1


def test_every_real_preset_has_a_tiny_twin_with_the_same_files():
    real = [n for n in list_presets(include_tiny=False)]
    assert "arc2face-lcm" in real
    for name in real:
        preset, twin = PRESETS[name], tiny_twin(name)
        assert twin is not None, f"real preset {name} has no tiny twin"
        assert (twin.family, twin.base) == (preset.family, preset.base)

        def layout(p):
            return [(c.role, c.subfolder, c.files, c.weight_name) for c in p.components]
        assert layout(twin) == layout(preset), name
        assert twin.defaults.scheduler == preset.defaults.scheduler
    assert {p.twin for p in PRESETS.values() if p.tiny} == set(real)


def test_doctor_lists_the_lcm_twin():
    from facegen.models import preset_status

    status = preset_status()
    assert status["arc2face-lcm"]["tiny_twin"] == "tiny-arc2face-lcm"
    assert status["tiny-arc2face-lcm"]["twin_of"] == "arc2face-lcm"


# ----------------------------------------------------------------------------- 3: FaceID keeps other LoRAs

def active_per_layer(unet) -> set[tuple[str, ...]]:
    """The distinct sets of active adapters over the UNet's LoRA layers that carry both adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {tuple(sorted(m.active_adapters)) for m in unet.modules()
            if isinstance(m, BaseTunerLayer) and {"faceid_0", "style"} <= set(m.scaling)}


def test_faceid_leaves_other_loras_on():
    pipe = IDGenerationPipeline.from_preset("tiny-faceid", device="cpu", fast_path=False)
    base = pixels(pipe(id_embeds=[emb(4)], seed=1, progress=False))
    f = lcm_lora_file()
    pipe.pipe.load_lora_weights(str(f.parent), weight_name=f.name, adapter_name="style")
    styled = pixels(pipe(id_embeds=[emb(4)], seed=1, progress=False))
    assert active_per_layer(pipe.pipe.unet) == {("faceid_0", "style")}
    assert np.abs(styled - base).mean() > 5               # the style LoRA acts through FaceID's calls
    no_faceid_lora = pixels(pipe(id_embeds=[emb(4)], seed=1, lora_scale=0.0, progress=False))
    assert not np.array_equal(no_faceid_lora, styled)      # FaceID's own weight still applies
    assert active_per_layer(pipe.pipe.unet) == {("faceid_0", "style")}


# ----------------------------------------------------------------------------- 4: InstantID layout

def upstream_resize_size(w: int, h: int, max_side=1280, min_side=1024, base=64) -> tuple[int, int]:
    ratio = min_side / min(h, w)
    w, h = round(ratio * w), round(ratio * h)
    ratio = max_side / max(h, w)
    return (round(ratio * w) // base) * base, (round(ratio * h) // base) * base


def upstream_draw_kps(w: int, h: int, kps: np.ndarray) -> np.ndarray:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]
    out = np.zeros([h, w, 3])
    for a, b in [[0, 2], [1, 2], [3, 2], [4, 2]]:
        x, y = kps[[a, b], 0], kps[[a, b], 1]
        length = ((x[0] - x[1]) ** 2 + (y[0] - y[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(y[0] - y[1], x[0] - x[1]))
        poly = cv2.ellipse2Poly((int(np.mean(x)), int(np.mean(y))), (int(length / 2), 4), int(angle), 0, 360, 1)
        out = cv2.fillConvexPoly(out.copy(), poly, colors[a])
    out = (out * 0.6).astype(np.uint8)
    for (x, y), c in zip(kps, colors):
        out = cv2.circle(out.copy(), (int(x), int(y)), 10, c, -1)
    return out


def test_keypoint_drawing_does_upstreams_float32_arithmetic_on_a_boundary_layout():
    """insightface gives float32 keypoints and upstream's draw_kps averages them in float32: a
    limb midpoint a hair under a pixel edge in float64 (52.99999809) is 53.0 in float32, and the
    limb lands one pixel over.  The drawing must follow upstream there too."""
    from facegen.adapters.instantid import draw_kps

    kps = np.array([[50.663513, 30.0], [70.0, 30.0], [55.336483, 50.0], [40.0, 80.0], [70.0, 80.0]],
                   dtype=np.float32)
    assert int((float(kps[0, 0]) + float(kps[2, 0])) / 2) != int(np.mean(kps[[0, 2], 0]))  # a boundary case
    ours = np.asarray(draw_kps(128, 112, kps))
    assert np.array_equal(ours, upstream_draw_kps(128, 112, kps))


def test_instantid_reference_layout_draws_upstreams_image(shared_faces, rgb_of):
    from facegen.adapters.base import ConditionRequest
    from facegen.adapters.instantid import InstantIDAdapter
    from facegen.faces.detect import detect_faces, select_faces

    adapter = InstantIDAdapter(get_preset("instantid"))   # the real preset's rule; no weights needed
    for name in ("obama_1.jpg", "biden_2.jpg", "group_two_people.jpg"):
        rgb = rgb_of(shared_faces / name)
        face = select_faces(detect_faces(rgb), "largest")[0]
        h0, w0 = rgb.shape[:2]
        w, h, kps, side = adapter.photo_layout((w0, h0), face.kps, None)
        assert (w, h) == upstream_resize_size(w0, h0)
        # upstream detects on the photo resized to (w, h): the keypoints scale with it
        up_kps = ((face.kps + 0.5) * np.array([w / w0, h / h0]) - 0.5).astype(np.float32)   # insightface: float32
        np.testing.assert_allclose(kps, up_kps, atol=1e-4)
        req = ConditionRequest(None, None, 5.0, h, w, control_kps=kps, kps_draw_side=side)
        ours = np.asarray(adapter.kps_image(kps, req))
        assert np.array_equal(ours, upstream_draw_kps(w, h, up_kps)), name


def test_tiny_instantid_takes_the_photos_layout_and_portrait_keeps_todays(tom_hanks_path, rgb_of):
    from facegen.adapters.instantid import resize_img_size
    from facegen.faces.pose import draw_kps, portrait_kps
    from facegen.id.encoders import embed_image

    pipe = IDGenerationPipeline.from_preset("tiny-instantid", device="cpu", fast_path=False)
    rgb = rgb_of(tom_hanks_path)
    seen = []
    real_condition = pipe.adapter.condition

    def spy(*a, **kw):
        seen.append(real_condition(*a, **kw))
        return seen[-1]
    pipe.adapter.condition = spy  # type: ignore[method-assign]
    ref = pipe(id_images=[tom_hanks_path], seed=2, progress=False, measure_similarity=False)
    w, h = resize_img_size(rgb.shape[1], rgb.shape[0], 80, 64, TINY_PIXEL_MULTIPLE)
    assert ref.images[0].size == (w, h) and ref.metadata[0]["face_layout"] == "reference"
    assert seen[-1]["image"][0].size == (w, h)
    portrait = pipe(id_images=[tom_hanks_path], seed=2, progress=False, face_layout="portrait",
                    measure_similarity=False)
    face = embed_image(rgb, "dlib-resnet-v1")[0]
    expected = draw_kps(64, 64, portrait_kps(face.face.kps, 64, 64), stick_width=1, radius=2)
    assert np.array_equal(np.asarray(seen[-1]["image"][0]), np.asarray(expected))   # today's portrait drawing
    no_photo = pipe(id_embeds=[face], seed=2, progress=False, measure_similarity=False)
    assert portrait.images[0].size == (64, 64)
    assert np.array_equal(pixels(portrait), pixels(no_photo))   # embeddings alone: the portrait layout


def test_tiny_instantid_layout_keeps_the_photos_aspect_within_rounding():
    """A 1480x832 photo (aspect 1.78) came out 80x32 (2.5) with the tiny layout's 16-px step;
    the exact height at width 80 is 45: the tiny rule stays within one size step (8) of it."""
    from facegen.adapters.instantid import resize_img_size

    for w0, h0 in ((1480, 832), (1126, 661), (320, 240), (874, 1200), (832, 1480)):
        w, h = resize_img_size(w0, h0, *get_preset("tiny-instantid").defaults.reference_resize)
        assert w % 8 == 0 and h % 8 == 0
        assert abs(min(w, h) - max(w, h) * min(w0, h0) / max(w0, h0)) < 8, (w0, h0, w, h)


def test_face_layout_is_refused_by_presets_without_keypoints():
    from facegen.errors import InvalidArgumentError

    pipe = IDGenerationPipeline.from_preset("tiny", device="cpu", fast_path=False)
    with pytest.raises(InvalidArgumentError, match="no face layout"):
        pipe(id_embeds=[emb(1)], face_layout="reference", progress=False)


# ----------------------------------------------------------------------------- 5: edit keypoints

def test_edit_jobs_detect_with_the_encoders_own_detector(monkeypatch, tom_hanks_path, rgb_of):
    import facegen.faces.detect as detect_mod
    import facegen.id.encoders as enc_mod
    from facegen.faces.types import Face
    from facegen.pipelines._edit_base import FaceEditPipeline

    scrfd_face = Face(bbox=np.array([10, 10, 90, 90], np.float32), score=0.99,
                      kps=np.array([[30, 40], [70, 40], [50, 60], [35, 75], [65, 75]], np.float32))

    class FakeSCRFDEncoder:
        def detect(self, rgb):
            return [scrfd_face]

        def embed(self, rgb, face):
            return IDEmbedding(np.ones(512, np.float32), "antelopev2-glintr100", face=face)

    calls = []
    monkeypatch.setattr(enc_mod, "get_analyzer", lambda name, *a, **k: calls.append(name) or FakeSCRFDEncoder())

    def no_dlib(*a, **k):
        raise AssertionError("the edit job used dlib instead of the encoder's detector")
    monkeypatch.setattr(detect_mod, "detect_faces", no_dlib)

    class Gen:  # what FaceEditPipeline reads of its generator
        encoder, access = "antelopev2-glintr100", ModelAccess(accept_license=True)
        preset = type("Preset", (), {"name": "fake-instantid"})()
        adapter = type("Adapter", (), {"check_editable": staticmethod(lambda name: None)})()

    edit = FaceEditPipeline(Gen())  # type: ignore[arg-type]
    rgb = rgb_of(tom_hanks_path)
    faces = edit.find_faces(rgb, "largest")
    assert len(faces) == 1 and np.array_equal(faces[0].kps, scrfd_face.kps)
    assert edit.embed_face(rgb, faces[0]).encoder == "antelopev2-glintr100"
    assert calls and set(calls) == {"antelopev2-glintr100"}


# ----------------------------------------------------------------------------- 6: ArcFace input rule

def _graph(tmp_path, names_ops):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes, prev = [], "input"
    for i, (name, op) in enumerate(names_ops):
        const = helper.make_tensor(f"c{i}", TensorProto.FLOAT, [1], [1.0])
        nodes.append(helper.make_node("Constant", [], [f"k{i}"], value=const, name=f"const{i}"))
        nodes.append(helper.make_node(op, [prev, f"k{i}"], [f"t{i}"], name=name))
        prev = f"t{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 3, 112, 112])])
    path = tmp_path / f"g{len(list(tmp_path.iterdir()))}.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("names_ops, inside", [
    ([("_minusscalar0", "Sub"), ("_mulscalar0", "Mul")], True),      # MXNet export: normalises inside
    ([("Sub_3", "Add"), ("Mul_4", "Div")], True),                    # named so, whatever the op
    ([("norm/sub", "Sub"), ("norm/mul", "Mul")], False),             # Sub/Mul ops named otherwise
    ([("Sub_1", "Sub"), ("Conv_2", "Add")], False),                  # no Mul name
])
def test_arcface_input_normalisation_follows_insightfaces_name_rule(tmp_path, names_ops, inside):
    from facegen.id.encoders import OnnxArcFaceEncoder
    from facegen.id.registry import get_encoder_spec

    spec = get_encoder_spec("antelopev2-glintr100")
    enc = OnnxArcFaceEncoder.__new__(OnnxArcFaceEncoder)
    enc.path = _graph(tmp_path, names_ops)
    assert enc._input_norm(spec) == ((0.0, 1.0) if inside else (127.5, 127.5))


# ----------------------------------------------------------------------------- 7: inswapper paste-back

def upstream_inswapper_paste(target: np.ndarray, fake: np.ndarray, M: np.ndarray) -> np.ndarray:
    """insightface 0.7.3 ``INSwapper.get(paste_back=True)`` on a whole frame (channel order is irrelevant)."""
    IM = cv2.invertAffineTransform(M)
    white = np.full(fake.shape[:2], 255, dtype=np.float32)
    size = (target.shape[1], target.shape[0])
    fake_w = cv2.warpAffine(fake, IM, size, borderValue=0.0)
    white = cv2.warpAffine(white, IM, size, borderValue=0.0)
    white[white > 20] = 255
    hs, ws = np.where(white == 255)
    mask_size = int(np.sqrt((hs.max() - hs.min()) * (ws.max() - ws.min())))
    k = max(mask_size // 10, 10)
    mask = cv2.erode(white, np.ones((k, k), np.uint8), iterations=1)
    k = max(mask_size // 20, 5)
    mask = cv2.GaussianBlur(mask, (2 * k + 1, 2 * k + 1), 0)
    mask = (mask / 255)[..., None]
    return (mask * fake_w + (1 - mask) * target.astype(np.float32)).astype(np.uint8)


@pytest.mark.parametrize("scale, angle", [(0.35, 0.0), (0.6, 25.0), (2.5, -10.0)])
def test_inswapper_pastes_back_as_insightface(scale, angle):
    from facegen.faces.align import warp_face
    from facegen.faces.types import Face
    from facegen.pipelines.inswapper import CROP, InswapperSwapPipeline

    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)
    template = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]])
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    kps = (template - 56) @ np.array([[c, s], [-s, c]]) * scale * 2 + np.array([200, 150])
    face = Face(bbox=np.array([0, 0, 1, 1], np.float32), score=1.0, kps=kps.astype(np.float32))
    pred = rng.random((1, 3, CROP, CROP)).astype(np.float32)

    class Session:
        def run(self, _names, feeds):
            return [pred]

    pipe = InswapperSwapPipeline.__new__(InswapperSwapPipeline)
    pipe.session, pipe.target_name, pipe.source_name = Session(), "target", "source"
    ours = pipe.swap_face(target, face, np.zeros((1, 512), np.float32))
    _, M = warp_face(target, face.kps, CROP, "arcface")
    fake = np.clip(255 * pred[0].transpose(1, 2, 0), 0, 255).astype(np.uint8)
    ref = upstream_inswapper_paste(target, fake, M)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_inswapper_mask_kernels_are_in_target_pixels():
    from facegen.edit.paste import inswapper_mask_kernels

    assert inswapper_mask_kernels(40, 40) == (10, 5)        # small faces: the floors
    assert inswapper_mask_kernels(400, 300) == (34, 17)     # sqrt(120000) = 346 target pixels


# ----------------------------------------------------------------------------- 8: no diffusers watermark

def test_sdxl_pipelines_never_add_diffusers_watermark(monkeypatch):
    import importlib

    class Marker:
        def apply_watermark(self, images):
            raise AssertionError("diffusers' watermark applied")

    for mod in ("diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl",
                "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint",
                "diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl",
                "diffusers.pipelines.controlnet.pipeline_controlnet_inpaint_sd_xl"):
        m = importlib.import_module(mod)
        monkeypatch.setattr(m, "is_invisible_watermark_available", lambda: True)
        monkeypatch.setattr(m, "StableDiffusionXLWatermarker", Marker, raising=False)
    from facegen.pipelines.swap import FaceSwapPipeline

    for name in ("tiny-faceid-sdxl", "tiny-instantid"):
        edit = FaceSwapPipeline(IDGenerationPipeline.from_preset(name, device="cpu", fast_path=False))
        assert edit.gen.pipe.watermark is None, name
        assert edit.inpaint_pipe().watermark is None, name
