"""Several people in one image (issue 16): layouts and regions, per-region conditioning on the
tiny twins, today's single-person call unchanged, clean refusals, the per-person report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from facegen.adapters.regions import box_pixels, region_masks
from facegen.adapters.registry import people_presets
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.models.registry import PRESETS
from facegen.pipelines.generation import IDGenerationPipeline
from facegen.pipelines.people import parse_layout, plan_people
from facegen.pipelines.people_report import PeopleJudge, match_faces

STEPS = 2
PEOPLE_PRESETS = ("tiny-faceid", "tiny-faceid-sdxl", "tiny-instantid")


def emb(seed: int, dim: int = 128) -> IDEmbedding:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return IDEmbedding(0.6 * v / np.linalg.norm(v), "dlib-resnet-v1")


A, B = emb(7), emb(8)


@pytest.fixture(scope="module")
def pipes() -> dict[str, IDGenerationPipeline]:
    return {name: IDGenerationPipeline.from_preset(name, device="cpu", fast_path=False)
            for name in ("tiny", *PEOPLE_PRESETS)}


def gen(p: IDGenerationPipeline, **kw):
    kw.setdefault("num_inference_steps", STEPS)
    return p(progress=False, seed=3, **kw)


def rgb(out) -> np.ndarray:
    return out.rgb(0).astype(int)


# ----------------------------------------------------------------------------- layouts and regions

@pytest.mark.parametrize("layout,n", [("side-by-side", 2), ("side-by-side", 3), ("group", 2), ("group", 4),
                                      ("0.05,0.1,0.45,0.6;0.5,0.1,0.95,0.6", 2)])
def test_regions_cover_their_boxes_and_never_overlap(layout, n):
    w, h = 96, 64
    boxes = [box_pixels(b, w, h) for b in parse_layout(layout, n)]
    masks = region_masks(boxes, w, h)
    assert len(masks) == n
    assert int(np.stack(masks).sum(axis=0).max()) == 1                 # disjoint
    for (x0, y0, x1, y1), m in zip(boxes, masks):
        assert m[y0:y1, x0:x1].all()                                     # each covers its box
        assert m.sum() > (x1 - x0) * (y1 - y0)                           # and some margin around it
        ys, xs = np.nonzero(m)
        assert xs.min() >= x0 - 0.36 * max(x1 - x0, y1 - y0) - 1         # but stays near it
    assert parse_layout("side-by-side", 2)[0][2] <= 0.5 <= parse_layout("side-by-side", 2)[1][0]


@pytest.mark.parametrize("layout,message", [
    ("0.1,0.1,0.6,0.6;0.5,0.5,0.9,0.9", "overlap"), ("0.1,0.1,0.4,0.4", "2 people"),
    ("0.1,0.1,0.4;0.5,0.1,0.9,0.4", "x0 < x1"), ("diagonal", "unknown layout"), ("0.1,0.1,0.4,abc;0.5,0.1,0.9,0.4", "numbers")])
def test_bad_layouts_are_one_line_errors(layout, message):
    with pytest.raises(InvalidArgumentError, match=message) as err:
        parse_layout(layout, 2)
    assert "\n" not in str(err.value)


def test_the_plan_places_each_person_in_their_box(pipes):
    p = pipes["tiny-instantid"]
    plan = plan_people(p, [[A], [B, emb(9)]], "side-by-side", 96, 64)
    assert len(plan.identities) == 2 and plan.masks is not None and plan.control_kps.shape == (2, 5, 2)
    for (x0, y0, x1, y1), m, kps in zip(plan.pixel_boxes, plan.masks, plan.control_kps):
        assert m[y0:y1, x0:x1].all()                                     # the region given covers the box
        assert (kps[:, 0] > x0).all() and (kps[:, 0] < x1).all() and (kps[:, 1] > y0).all() and (kps[:, 1] < y1).all()


def test_instantid_draws_each_person_in_their_own_region(pipes):
    from facegen.adapters.base import ConditionRequest, Sample

    p = pipes["tiny-instantid"]
    plan = plan_people(p, [[A], [B]], "side-by-side", 64, 64)
    req = ConditionRequest(prompt=None, negative_prompt=None, guidance_scale=5.0, height=64, width=64,
                           masks=plan.masks, control_kps=plan.control_kps)
    kwargs = p.adapter.condition(p.pipe, [Sample((A, B))], req)
    combined = np.asarray(kwargs["image"][0]).max(axis=2) > 0
    regions = kwargs["identitynet_regions"]
    assert kwargs["cross_attention_kwargs"]["ip_adapter_masks"][0].shape == (1, 2, 64, 64)
    for k, m in enumerate(plan.masks):
        own = np.asarray(regions.images[k][0]).max(axis=2) > 0
        assert own.any() and not (own & (m == 0)).any()                 # person k's drawing lies in region k
        assert (combined[m > 0] == own[m > 0]).all()                      # the combined drawing is theirs there


# ----------------------------------------------------------------------------- per-region conditioning

def _half_distances(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    w = x.shape[1] // 2
    return float(np.abs(x[:, :w] - y[:, :w]).mean()), float(np.abs(x[:, w:] - y[:, w:]).mean())


@pytest.mark.parametrize("name", PEOPLE_PRESETS)
def test_swapping_the_people_swaps_the_regions(pipes, name):
    p = pipes[name]
    ab = rgb(gen(p, people=[A, B], layout="side-by-side", measure_similarity=False))
    ba = rgb(gen(p, people=[B, A], layout="side-by-side", measure_similarity=False))
    aa = rgb(gen(p, people=[A, A], layout="side-by-side", measure_similarity=False))
    # A|B against A|A: only the right person differs, so the right half moves more; B|A: the left
    left, right = _half_distances(ab, aa)
    assert right > 1.2 * left, (left, right)
    left, right = _half_distances(ba, aa)
    assert left > 1.2 * right, (left, right)
    assert not np.array_equal(ab, ba)


@pytest.mark.slow
def test_instantid_identitynet_alone_is_regional(pipes):
    """IP attention off: IdentityNet's per-person passes alone carry each identity to its region."""
    p = pipes["tiny-instantid"]
    kw = dict(layout="side-by-side", measure_similarity=False, adapter_scale=0.0)
    ab, aa = rgb(gen(p, people=[A, B], **kw)), rgb(gen(p, people=[A, A], **kw))
    left, right = _half_distances(ab, aa)
    assert right > 1.2 * left, (left, right)


@pytest.mark.parametrize("name", ["tiny-faceid", "tiny-instantid"])
def test_one_person_is_todays_single_person_call(pipes, name):
    p = pipes[name]
    new = gen(p, people=[[A, emb(9)]])
    old = gen(p, id_embeds=[A, emb(9)])
    assert np.array_equal(rgb(new), rgb(old)) and new.id_similarity == old.id_similarity
    assert len(new.people) == 1 and len(new.people[0]) == 1
    assert new.metadata[0]["people_report"][0]["box"] == [0.0, 0.0, 1.0, 1.0]


def test_one_person_from_photos_is_todays_call(pipes, shared_faces):
    p = pipes["tiny-instantid"]                      # the reference face layout comes from the photo, as today
    photos = [shared_faces / "obama_1.jpg", shared_faces / "obama_2.jpg"]
    assert np.array_equal(rgb(gen(p, people=[photos])), rgb(gen(p, id_images=photos)))


# ----------------------------------------------------------------------------- refusals

def test_presets_without_the_capability_refuse_naming_those_that_can(pipes):
    can = people_presets(2)
    assert set(PEOPLE_PRESETS) <= set(can) and "tiny" not in can
    assert can == sorted(n for n, pr in PRESETS.items() if pr.family in {PRESETS[c].family for c in can})
    with pytest.raises(InvalidArgumentError) as err:
        gen(pipes["tiny"], people=[A, B])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("preset 'tiny' places one person per image")
    assert msg.endswith(", ".join(can))
    with pytest.raises(InvalidArgumentError, match="5 people: none"):
        gen(pipes["tiny-faceid"], people=[emb(i) for i in range(5)])
    with pytest.raises(InvalidArgumentError, match="remove id_embeds"):
        gen(pipes["tiny-faceid"], people=[A, B], id_embeds=[A])
    with pytest.raises(FacegenError, match="give photos or embeddings"):
        gen(pipes["tiny-faceid"], people=[[A, "b.jpg"], [B]])


# ----------------------------------------------------------------------------- the per-person report

def test_the_report_has_one_entry_per_person(pipes):
    out = gen(pipes["tiny-faceid-sdxl"], people=[A, B, emb(9)], layout="group", num_images=2)
    assert len(out.people) == 2 and all(len(r) == 3 for r in out.people)
    for i, reports in enumerate(out.people):
        assert [r.index for r in reports] == [0, 1, 2]
        assert [r.box for r in reports] == parse_layout("group", 3)
        assert all(r.found is False for r in reports)              # random weights: no face anywhere
        assert out.id_similarity[i] is None
        meta = out.metadata[i]
        assert meta["people"] == 3 and meta["identities"] == 3 and len(meta["people_report"]) == 3
        json.dumps(meta)


def test_match_faces_goes_by_box():
    boxes = [(0, 0, 40, 40), (60, 0, 100, 40)]
    faces = [(62, 2, 98, 38), (100, 100, 120, 120), (3, 5, 37, 39)]
    assert match_faces(boxes, faces) == [2, 0]
    assert match_faces(boxes, [(5, 5, 35, 35)]) == [0, None]
    assert match_faces(boxes, []) == [None, None]


def test_report_on_a_real_two_person_photo(shared_faces, rgb_of):
    """The judge finds each person where their box is and tells them apart — and flags a
    picture whose people are in each other's places."""
    from facegen.id.encoders import embed_image, get_analyzer

    photo = rgb_of(shared_faces / "group_two_people.jpg")
    enc = get_analyzer("dlib-resnet-v1")
    faces = sorted(enc.detect(photo), key=lambda f: f.bbox[0])[:2]
    h, w = photo.shape[:2]
    px = [tuple(int(v) for v in f.bbox) for f in faces]
    boxes = [(b[0] / w, b[1] / h, b[2] / w, b[3] / h) for b in px]
    refs = [embed_image(photo, enc, policy=i)[0] for i in (0, 1)]
    report = PeopleJudge("dlib-resnet-v1", enc, refs).report(photo, boxes, px)
    assert len(report) == 2 and all(r.found for r in report)
    for r in report:
        assert r.id_similarity > 0.9 and r.cross_similarity < r.id_similarity and not r.looks_like_someone_else
    swapped = PeopleJudge("dlib-resnet-v1", enc, refs[::-1]).report(photo, boxes, px)
    assert all(r.looks_like_someone_else for r in swapped)


# ----------------------------------------------------------------------------- CLI

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "facegen", "generate", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_cli_refuses_before_loading_a_model(tmp_path, shared_faces):
    a, b = str(shared_faces / "obama_1.jpg"), str(shared_faces / "biden_1.jpg")
    proc = run_cli("--model", "tiny", "--people", a, b, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: preset 'tiny' places one person per image")
    proc = run_cli("--model", "tiny-faceid", "--people", a, b, "--id", a, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "not allowed with argument --people" in proc.stderr   # argparse: one of --id, --id-embeds, --people
    proc = run_cli("--model", "tiny-faceid", "--people", a, b, "--layout", "0.1,0.1,0.5,0.5", "--out",
                   str(tmp_path / "o"))
    assert proc.returncode == 2 and "1 face boxes for 2 people" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_two_people(tmp_path, shared_faces):
    f = shared_faces
    out = tmp_path / "out"
    proc = run_cli("--model", "tiny-faceid", "--people", f"{f / 'obama_1.jpg'},{f / 'obama_2.jpg'}",
                   str(f / "biden_1.jpg"), "--layout", "group", "--steps", "2", "--seed", "1", "--no-progress",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "person 0:" in proc.stdout and "person 1:" in proc.stdout
    rec = json.loads((out / "metadata.jsonl").read_text().splitlines()[0])
    assert rec["people"] == 2 and rec["reference_photos"] == 3 and len(rec["people_report"]) == 2
    assert rec["layout"] == [list(map(lambda v: round(v, 4), b)) for b in parse_layout("group", 2)]
