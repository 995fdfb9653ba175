"""Swap, aging and restoration with the tiny presets on real photos: only the face changes."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from facegen.errors import ConsentRequiredError, InvalidArgumentError, NoFaceError
from facegen.faces import detect_faces
from facegen.io import load_image, read_metadata

STEPS = 4


@pytest.fixture(scope="module")
def swap_pipe():
    from facegen.pipelines.swap import FaceSwapPipeline
    return FaceSwapPipeline.from_preset("tiny")


def changed_only_near_faces(before, after, faces, grow=0.9):
    """Every changed pixel lies inside a face box grown by ``grow`` of its size on each side."""
    diff = np.any(before != after, axis=-1)
    allowed = np.zeros_like(diff)
    h, w = diff.shape
    for f in faces:
        x1, y1, x2, y2 = f.bbox
        gx, gy = (x2 - x1) * grow, (y2 - y1) * grow
        allowed[max(0, int(y1 - gy)):min(h, int(y2 + gy)), max(0, int(x1 - gx)):min(w, int(x2 + gx))] = True
    return diff.any() and not (diff & ~allowed).any()


def test_swap_changes_only_the_face_and_is_seeded(swap_pipe, tom_hanks_path, shared_faces):
    target = shared_faces / "obama_3_small.jpg"
    before = load_image(target)
    out = swap_pipe(tom_hanks_path, target, consent=True, seed=5, num_inference_steps=STEPS, progress=False)
    after = out.rgb(0)
    assert after.shape == before.shape
    assert changed_only_near_faces(before, after, detect_faces(before))
    face = detect_faces(before)[0]
    x1, y1, x2, y2 = (int(v) for v in face.bbox)
    assert np.abs(after[y1:y2, x1:x2].astype(int) - before[y1:y2, x1:x2]).mean() > 5   # the face was re-drawn
    again = swap_pipe(tom_hanks_path, target, consent=True, seed=5, num_inference_steps=STEPS, progress=False)
    assert np.array_equal(again.rgb(0), after)
    other = swap_pipe(tom_hanks_path, target, consent=True, seed=6, num_inference_steps=STEPS, progress=False)
    assert not np.array_equal(other.rgb(0), after)
    meta = out.provenance(0)
    assert meta["task"] == "swap" and meta["ai_edited"] is True and meta["seed"] == 5


def test_swap_all_faces_of_a_group(swap_pipe, tom_hanks_path, shared_faces):
    target = shared_faces / "group_two_people.jpg"
    before = load_image(target)
    faces = detect_faces(before)
    out = swap_pipe(tom_hanks_path, target, consent=True, target_face="all", seed=1, num_inference_steps=STEPS,
                    progress=False)
    after = out.rgb(0)
    assert changed_only_near_faces(before, after, faces)
    for f in faces:                                   # both faces were re-drawn
        x1, y1, x2, y2 = (int(v) for v in f.bbox)
        assert np.any(after[y1:y2, x1:x2] != before[y1:y2, x1:x2])
    assert out.metadata[0]["faces_swapped"] == 2
    one = swap_pipe(tom_hanks_path, target, consent=True, target_face=1, seed=1, num_inference_steps=STEPS,
                    progress=False).rgb(0)
    x1, y1, x2, y2 = (int(v) for v in faces[0].bbox)  # face 0 untouched when only face 1 is swapped
    assert np.array_equal(one[y1:y2, x1:x2], before[y1:y2, x1:x2])


def test_swap_refusals(swap_pipe, tom_hanks_path, tmp_path):
    from PIL import Image
    with pytest.raises(ConsentRequiredError, match="--consent"):
        swap_pipe(tom_hanks_path, tom_hanks_path)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    with pytest.raises(NoFaceError):
        swap_pipe(tom_hanks_path, blank, consent=True)
    with pytest.raises(NoFaceError):
        swap_pipe(blank, tom_hanks_path, consent=True)


def test_aging_needs_text_and_current_age(swap_pipe, tom_hanks_path):
    from facegen.pipelines.aging import FaceAgingPipeline, aging_strength
    with pytest.raises(InvalidArgumentError, match="takes no text"):
        FaceAgingPipeline(swap_pipe.gen)(tom_hanks_path, 70, from_age=40, consent=True)
    assert aging_strength(30, 32) < aging_strength(30, 60) < aging_strength(30, 90)


def test_aging_two_passes_with_faceid(tom_hanks_path, shared_faces):
    from facegen.pipelines.aging import FaceAgingPipeline
    pipe = FaceAgingPipeline.from_preset("tiny-faceid")
    with pytest.raises(InvalidArgumentError, match="--from-age"):
        pipe(tom_hanks_path, 70, consent=True)
    image = shared_faces / "obama_3_small.jpg"
    before = load_image(image)
    out = pipe(image, 75, from_age=45, consent=True, seed=3, num_inference_steps=STEPS, progress=False)
    after = out.rgb(0)
    assert after.shape == before.shape and changed_only_near_faces(before, after, detect_faces(before))
    meta = out.metadata[0]
    assert "75 year old" in meta["prompt"] and meta["pass1_adapter_scale"] < meta["pass2_adapter_scale"]


def test_restore_with_reference(swap_pipe, shared_faces):
    from facegen.pipelines.degrade import degrade
    from facegen.pipelines.restoration import FaceRestorationPipeline, restoration_strength
    pipe = FaceRestorationPipeline(swap_pipe.gen)
    clean = load_image(shared_faces / "obama_3_small.jpg")
    bad = degrade(clean, blur_sigma=2.0, noise_sigma=6, jpeg_quality=30, seed=0)
    out = pipe(bad, reference=shared_faces / "obama_1.jpg", consent=True, seed=2, num_inference_steps=STEPS,
               progress=False)
    after = out.rgb(0)
    assert after.shape == bad.shape and changed_only_near_faces(bad, after, detect_faces(bad))
    meta = out.metadata[0]
    assert meta["reference"] is True and 0 < meta["strength"][0] <= 1
    assert restoration_strength(0.1) < restoration_strength(0.8)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "facegen", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)


def test_cli_swap_and_restore(tom_hanks_path, shared_faces, tmp_path):
    target = shared_faces / "obama_3_small.jpg"
    out = tmp_path / "swapped.png"
    proc = run_cli("swap", "--model", "tiny", "--source", str(tom_hanks_path), "--target", str(target),
                   "--out", str(out), "--consent", "--seed", "4", "--steps", str(STEPS), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert load_image(out).shape == load_image(target).shape
    meta = read_metadata(out)
    assert meta["ai_generated"] and meta["metadata"]["task"] == "swap" and meta["metadata"]["seed"] == 4
    proc = run_cli("swap", "--model", "tiny", "--source", str(tom_hanks_path), "--target", str(target),
                   "--out", str(out))
    assert proc.returncode == 2 and "--consent" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("age", "--model", "tiny", "--image", str(target), "--age", "70", "--from-age", "40",
                   "--out", str(tmp_path / "older.png"), "--consent")   # a new name: swapped.png exists
    assert proc.returncode == 2 and "takes no text" in proc.stderr
    restored = tmp_path / "restored.png"
    proc = run_cli("restore", "--model", "tiny", "--image", str(target), "--out", str(restored), "--consent",
                   "--seed", "1", "--steps", str(STEPS), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert read_metadata(restored)["metadata"]["task"] == "restore"


def test_instantid_swap_feeds_identitynet_the_target_keypoints_and_face_tokens(tom_hanks_path, shared_faces):
    from facegen.edit import crop_face
    from facegen.faces.align import transform_points
    from facegen.pipelines.swap import FaceSwapPipeline

    pipe = FaceSwapPipeline.from_preset("tiny-instantid")
    seen = []
    controlnet = pipe.gen.pipe.controlnet
    forward = controlnet.forward

    def spy(*args, **kwargs):                          # what IdentityNet finally receives (after the hooks)
        seen.append((kwargs["encoder_hidden_states"].shape, kwargs["controlnet_cond"].detach().clone()))
        return forward(*args, **kwargs)

    controlnet.forward = spy
    try:
        target = shared_faces / "obama_3_small.jpg"
        before = load_image(target)
        out = pipe(tom_hanks_path, target, consent=True, seed=2, num_inference_steps=STEPS, progress=False)
    finally:
        del controlnet.forward
    assert changed_only_near_faces(before, out.rgb(0), detect_faces(before))
    tokens_shape, cond = seen[-1]
    assert tokens_shape[1] == 16                       # the Resampler's face tokens, not text
    face = detect_faces(before)[0]
    fc = crop_face(before, face, size=pipe.crop_size, template="ffhq")
    size = cond.shape[-1]
    drawing = cond[0].abs().sum(0)
    for x, y in transform_points(face.kps, fc.M) * size / pipe.crop_size:   # drawn at the target's points
        assert drawing[int(round(y)), int(round(x))] > 0


@pytest.mark.parametrize("job, preset, says", [("aging", "tiny", "takes no text"),
                                               ("aging", "tiny-infiniteyou", "cannot run the edit jobs"),
                                               ("swap", "tiny-infiniteyou", "cannot run the edit jobs"),
                                               ("restoration", "tiny-infiniteyou", "cannot run the edit jobs")])
def test_edit_jobs_refuse_a_preset_from_its_capabilities_before_any_weight_loads(monkeypatch, job, preset, says):
    """The refusal comes from the preset's capability data, not from a loaded model (aging used to
    load tiny for seconds before saying Arc2Face takes no text); the video jobs build through here."""
    import importlib

    from facegen.pipelines.generation import IDGenerationPipeline

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the capability check")

    monkeypatch.setattr(IDGenerationPipeline, "from_preset", no_loading)
    module = importlib.import_module(f"facegen.pipelines.{job}")
    cls = {"aging": "FaceAgingPipeline", "swap": "FaceSwapPipeline", "restoration": "FaceRestorationPipeline"}[job]
    with pytest.raises(InvalidArgumentError, match=says):
        getattr(module, cls).from_preset(preset)
