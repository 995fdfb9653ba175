"""`facegen dataset-report` and the dataset card: real photos judged by dlib, tiny-preset and
fake-generator datasets end to end, bad input, the metric maths and the head-pose estimate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, identity_of
from facegen.dataset.report import build_report
from facegen.dataset.report_analysis import Measurements, load_reference, save_reference
from facegen.dataset.report_metrics import _impostor_pairs, describe, verification
from facegen.dataset.report_source import Item, open_dataset
from facegen.errors import EncoderMismatchError, InvalidArgumentError

SCHEMA_KEYS = {"identities", "images", "encoder", "threshold", "face_found_rate", "genuine", "impostor",
               "verification", "separability", "variation", "leakage", "duplicates"}
STAT_KEYS = {"count", "mean", "std", "p05", "p50", "p95"}


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def _photos(shared_faces: Path) -> list[Path]:
    return sorted(p for p in shared_faces.iterdir() if p.suffix in (".jpg", ".png") and "group" not in p.stem)


@pytest.fixture(scope="module")
def real_report(shared_faces, tmp_path_factory):
    """The shared photos as an ImageFolder (one folder per person), judged by dlib, checked
    for leakage against a folder of two of those people's photos."""
    tmp = tmp_path_factory.mktemp("real")
    for p in _photos(shared_faces):
        _link(p, tmp / "ds" / identity_of(p) / p.name)
    for name in ("obama_1.jpg", "biden_1.jpg"):
        _link(shared_faces / name, tmp / "real" / name)
    report = build_report(tmp / "ds", reference=tmp / "real", encoder="dlib-resnet-v1", workers=1,
                          progress=False)
    return tmp, report


def test_report_on_real_photos_separates_genuine_from_impostor(real_report) -> None:
    _, report = real_report
    r = report.data
    assert SCHEMA_KEYS <= set(r) and STAT_KEYS <= set(r["genuine"]) and STAT_KEYS <= set(r["impostor"])
    assert r["encoder"] == "dlib-resnet-v1" and r["threshold"] == 0.4
    assert r["identities"] == 4 and r["images"] == 8 and r["face_found_rate"] == 1.0
    assert r["genuine"]["count"] == 5 and r["impostor"]["count"] == 23    # all pairs: 8*7/2 - 5
    assert r["genuine"]["mean"] > r["impostor"]["mean"] + 0.3
    assert r["verification"]["accuracy"] >= 0.95 and r["verification"]["eer"] <= 0.05
    sep = r["separability"]
    assert sep["identities_too_close"] == [] and sep["unique_identities"] == 4
    assert set(sep) >= {"nearest_other_mean", "identities_too_close", "unique_identities"}
    assert sep["nearest_other"]["obama"][0] in {"alex_lacamoire", "biden", "lin_manuel_miranda"}
    assert r["images_per_identity"]["min"] == 1 and r["images_per_identity"]["max"] == 3
    assert {"yaw_std", "pitch_std", "roll_std"} <= set(r["variation"]) and r["variation"]["yaw_std"] > 0
    assert r["duplicates"]["count"] == 0 and r["unreadable"]["count"] == 0
    assert r["facegen"] is None and r["judge_independent"] is None


def test_reference_of_two_people_flags_exactly_them(real_report) -> None:
    _, report = real_report
    lk = report.data["leakage"]
    assert lk["reference_count"] == 2
    assert sorted(lk["flagged"]) == ["biden", "obama"]
    assert lk["nearest"]["obama"]["reference"] == "obama_1" and lk["nearest"]["biden"]["reference"] == "biden_1"
    assert lk["nearest"]["alex_lacamoire"]["similarity"] < 0.4


def test_report_files_json_markdown_plots(real_report) -> None:
    _, report = real_report
    out = report.out
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["genuine"] == report.data["genuine"]
    md = (out / "report.md").read_text()
    assert "verification accuracy at 0.4" in md and "2 identities flagged: " in md
    assert len(report.data["plots"]) == 4
    for name in report.data["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in md
    rows = [json.loads(x) for x in (out / "images.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["face"] for r in rows)


def test_head_pose_of_real_photos(real_report) -> None:
    """obama_1 faces the camera; obama_2 is turned toward the image's left (yaw > 0)."""
    _, report = real_report
    rows = {Path(r["image"]).name: r for r in map(json.loads, (report.out / "images.jsonl").read_text().splitlines())}
    assert abs(rows["obama_1.jpg"]["yaw"]) < 12 and abs(rows["obama_1.jpg"]["roll"]) < 10
    assert rows["obama_2.jpg"]["yaw"] > 20
    assert rows["lin_manuel_miranda_1.png"]["yaw"] < -10


def test_two_folders_of_one_person_are_too_close_and_duplicates_found(shared_faces, tmp_path) -> None:
    ds = tmp_path / "ds"
    _link(shared_faces / "obama_1.jpg", ds / "obama_a" / "1.jpg")
    _link(shared_faces / "obama_2.jpg", ds / "obama_b" / "2.jpg")
    _link(shared_faces / "obama_3_small.jpg", ds / "obama_b" / "3.jpg")
    _link(shared_faces / "biden_2.jpg", ds / "biden" / "2.jpg")
    _link(shared_faces / "biden_2.jpg", ds / "biden" / "2_copy.jpg")
    (ds / "biden" / "notes.txt").write_text("not an image")
    from facegen.dataset.filters import EncoderEmbedFn
    from facegen.io import load_image

    obama = EncoderEmbedFn("dlib-resnet-v1")(load_image(shared_faces / "obama_1.jpg"))
    ref = save_reference(tmp_path / "real.npz", obama.vector[None], "dlib-resnet-v1", ["Barack Obama"])
    r = build_report(ds, reference=ref, workers=1, progress=False, plots=False, out=tmp_path / "rep").data
    assert r["images"] == 5
    close = r["separability"]["identities_too_close"]
    assert [sorted(p[:2]) for p in close] == [["obama_a", "obama_b"]] and close[0][2] >= 0.4
    assert r["separability"]["unique_identities"] == 1 and r["separability"]["too_close_fraction"] == pytest.approx(2 / 3, abs=1e-3)
    assert sorted(r["leakage"]["flagged"]) == ["obama_a", "obama_b"]
    assert r["leakage"]["nearest"]["biden"]["reference"] == "Barack Obama"
    assert r["duplicates"]["count"] == 1
    assert r["duplicates"]["pairs"][0][:4] == ["biden", "biden/2.jpg", "biden/2_copy.jpg", 0]


# ---------------------------------------------------------------------- facegen datasets
@pytest.mark.slow
def test_tiny_preset_dataset_end_to_end_says_no_face(tmp_path) -> None:
    """`facegen dataset` (tiny preset) leaves a card; `facegen dataset-report` runs on it, says
    that no face was found and refreshes the card with its figures."""
    from facegen.dataset.card import read_card_header

    root = tmp_path / "ds"
    cmd = [sys.executable, "-m", "facegen"]
    gen = subprocess.run([*cmd, "dataset", "--model", "tiny", "--num-ids", "2", "--images-per-id", "2", "--seed", "3",
                          "--steps", "2", "--out", str(root), "--no-progress"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert gen.returncode == 0, gen.stderr
    card = (root / "README.md").read_text()
    header = read_card_header(root / "README.md")
    assert header["license"] == "apache-2.0" and header["size_categories"] == ["n<1K"]
    assert "image-classification" in header["task_categories"]
    assert header["configs"][0]["data_files"][0]["path"] == "shards/*.tar"
    assert "Not measured yet" in card and "4 images generated, 4 kept; 0 rejections" in card

    rep = subprocess.run([*cmd, "dataset-report", str(root), "--no-progress"], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert rep.returncode == 0, rep.stderr
    assert "no face found in any of the 4 images" in rep.stdout
    r = json.loads((root / "report" / "report.json").read_text())
    assert r["faces_found"] == 0 and r["face_found_rate"] == 0.0 and r["identities"] == 2 and r["images"] == 4
    assert r["genuine"]["count"] == 0 and r["verification"]["accuracy"] is None and r["leakage"] is None
    assert r["facegen"]["model"] == "tiny" and r["facegen"]["rejected"] == 0
    assert len(r["plots"]) == 4
    card = (root / "README.md").read_text()
    assert "Not measured yet" not in card and "| faces found | 0 of 4 readable images (0.0 %) |" in card
    assert read_card_header(root / "README.md") == header


class _NoiseGenerator:
    def __call__(self, items):
        return [np.random.default_rng(it.seed).integers(0, 256, (48, 48, 3), dtype=np.uint8) for it in items]


@pytest.fixture(scope="module")
def fake_imagefolder(tmp_path_factory):
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    root = tmp_path_factory.mktemp("fake") / "ds"
    spec = DatasetSpec(out=str(root), model="tiny", num_ids=3, images_per_id=4, seed=5, format="imagefolder",
                       shard_size=2)
    run_dataset(spec, _NoiseGenerator(), progress=False)
    return root


def test_facegen_imagefolder_with_an_unreadable_image(fake_imagefolder, tmp_path) -> None:
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(fake_imagefolder, root)
    (root / "images" / "000001" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    src = open_dataset(root)
    assert src.kind == "facegen" and src.format == "imagefolder" and src.identities == ["000000", "000001", "000002"]
    r = build_report(root, workers=1, progress=False, plots=False).data
    assert r["images"] == 12 and r["unreadable"]["count"] == 1
    assert r["unreadable"]["files"][0][0] == "images/000001/002.png"
    assert r["faces_found"] == 0 and any("unreadable" in w for w in r["warnings"])
    assert any("shard-000000" in w and "damaged" in w for w in r["warnings"])
    assert r["facegen"]["spec"]["num_ids"] == 3 and r["facegen"]["rejected_by_reason"] == {}


def test_the_card_yaml_header_parses(fake_imagefolder) -> None:
    from facegen.dataset.card import dataset_card, licence_of, read_card_header, size_category

    header = read_card_header(fake_imagefolder / "README.md")
    assert header["license"] == "apache-2.0" and header["tags"][:2] == ["synthetic", "ai-generated"]
    assert header["configs"][0]["data_files"][0]["path"] == "images/**/*.png"
    hub = pytest.importorskip("huggingface_hub")
    card = hub.DatasetCard((fake_imagefolder / "README.md").read_text())
    assert card.data.license == "apache-2.0" and card.data.size_categories == ["n<1K"]
    assert "## Intended use" in card.text and "## Limitations" in card.text and "## Provenance" in card.text
    assert size_category(999) == "n<1K" and size_category(1000) == "1K<n<10K" and size_category(2 * 10**6) == "1M<n<10M"
    assert licence_of("arc2face")[0] == "other" and "CC BY-NC" in licence_of("arc2face")[2]
    assert dataset_card(fake_imagefolder) == (fake_imagefolder / "README.md").read_text()   # deterministic


@pytest.mark.slow
def test_workers_give_the_same_report(fake_imagefolder, tmp_path) -> None:
    one = build_report(fake_imagefolder, workers=1, progress=False, plots=False, card=False, out=tmp_path / "a").data
    two = build_report(fake_imagefolder, workers=2, batch_size=3, progress=False, plots=False, card=False,
                       out=tmp_path / "b").data
    for d in (one, two):
        d.pop("timing")
    assert one == two and one["images"] == 12
    assert (tmp_path / "a" / "images.jsonl").read_bytes() == (tmp_path / "b" / "images.jsonl").read_bytes()


# ---------------------------------------------------------------------- bad input
def test_bad_folders_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(InvalidArgumentError, match="no such folder"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="is empty"):
        open_dataset(tmp_path / "empty")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"x")
    with pytest.raises(InvalidArgumentError, match="no identity sub-folders"):
        open_dataset(flat)
    (tmp_path / "noimg" / "person").mkdir(parents=True)
    (tmp_path / "noimg" / "person" / "a.txt").write_text("x")
    with pytest.raises(InvalidArgumentError, match="no images"):
        open_dataset(tmp_path / "noimg")
    from facegen.cli import main

    assert main(["dataset-report", str(tmp_path / "empty"), "--no-progress"]) == 2


def test_reference_of_the_wrong_encoder_or_dimension_is_refused(fake_imagefolder, tmp_path) -> None:
    arc = save_reference(tmp_path / "arc.npz", np.ones((2, 512)), "buffalo_l-w600k-r50")
    with pytest.raises(EncoderMismatchError, match="embedded with 'buffalo_l-w600k-r50'"):
        build_report(fake_imagefolder, reference=arc, encoder="dlib-resnet-v1", progress=False, card=False,
                     out=tmp_path / "r")
    short = save_reference(tmp_path / "short.npz", np.ones((2, 64)), "dlib-resnet-v1")
    with pytest.raises(InvalidArgumentError, match="64-D"):
        build_report(fake_imagefolder, reference=short, encoder="dlib-resnet-v1", progress=False, card=False,
                     out=tmp_path / "r")
    np.savez(tmp_path / "noenc.npz", embeddings=np.ones((2, 128)))
    with pytest.raises(InvalidArgumentError) as err:
        load_reference(tmp_path / "noenc.npz")
    assert str(err.value).startswith(f"{tmp_path / 'noenc.npz'} does not record the encoder")
    np.save(tmp_path / "plain.npy", np.ones((2, 128), np.float32))
    with pytest.raises(InvalidArgumentError, match="does not record the encoder"):
        load_reference(tmp_path / "plain.npy")
    (tmp_path / "plain.json").write_text(json.dumps({"encoder": "dlib-resnet-v1", "names": ["a", "a"]}))
    ref = load_reference(tmp_path / "plain.npy")
    assert ref.encoder == "dlib-resnet-v1" and ref.people == ["a"]


def test_plots_without_matplotlib_name_the_extra(monkeypatch) -> None:
    from facegen.dataset.report_plots import pyplot
    from facegen.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"facegen\[report\]"):
        pyplot()


# ---------------------------------------------------------------------- maths
def test_verification_accuracy_and_eer() -> None:
    v = verification(np.array([0.9, 0.8, 0.7, 0.3]), np.array([0.1, 0.2, 0.5, 0.35, 0.0, 0.05]), 0.4)
    assert v["tar"] == 0.75 and v["far"] == pytest.approx(1 / 6, abs=1e-4)
    assert v["accuracy"] == pytest.approx((0.75 + 5 / 6) / 2, abs=1e-4)
    # FRR - FAR crosses zero between t=0.35 (FRR 1/4, FAR 2/6) and t=0.5 (FRR 1/4, FAR 1/6)
    assert v["eer"] == pytest.approx(0.25, abs=1e-4) and v["eer_threshold"] == 0.5
    skewed = verification(np.array([0.9, 0.8, 0.6, 0.3]), np.array([0.1, 0.2, 0.5, 0.35, 0.0, 0.05, 0.7, 0.4]), 0.45)
    # at t=0.5: FRR 1/4, FAR 2/8; the curves meet there exactly
    assert skewed["eer"] == pytest.approx(0.25, abs=1e-4)
    perfect = verification(np.array([0.8, 0.9]), np.array([0.1, 0.2]), 0.5)
    assert perfect["accuracy"] == 1.0 and perfect["eer"] == 0.0
    assert verification(np.array([]), np.array([0.1]), 0.5)["accuracy"] is None
    assert describe([]) == {"count": 0, "mean": None, "std": None, "p05": None, "p50": None, "p95": None}


def test_impostor_pairs_cross_identities_all_or_sampled() -> None:
    labels = np.repeat(np.arange(5), 4)
    i, j, sampled = _impostor_pairs(labels, 10_000, np.random.default_rng(0))
    assert not sampled and len(i) == (20 * 19) // 2 - 5 * 6 and np.all(labels[i] != labels[j])
    i, j, sampled = _impostor_pairs(labels, 50, np.random.default_rng(0))
    assert sampled and len(i) == 50 and np.all(labels[i] != labels[j])


def test_measurements_refuse_a_wrong_dimension() -> None:
    from facegen.dataset.report_analysis import ImageResult
    from facegen.errors import FacegenError

    m = Measurements.empty(2, 128)
    m.add(ImageResult(0, vector=np.ones(128, np.float32), ahash=bytes(32)))
    with pytest.raises(FacegenError, match="128"):
        m.add(ImageResult(1, vector=np.ones(64, np.float32), ahash=bytes(32)))
    assert m.found.tolist() == [True, False] and Item(0, path="x").data is None


@pytest.mark.parametrize("n", [68, 5])
def test_head_pose_recovers_known_rotations(n) -> None:
    from facegen.faces.headpose import model_points, pose_from_points, rotation_matrix

    model = model_points(n)
    for yaw, pitch, roll in [(0, 0, 0), (30, 0, 0), (-25, 10, -8), (10, -20, 15)]:
        pts = (rotation_matrix(yaw, pitch, roll) @ model.T).T + np.array([40.0, -20.0, 2500.0])
        uv = pts[:, :2] / pts[:, 2:] * 900.0 + np.array([320.0, 240.0])
        got = pose_from_points(uv, (320.0, 240.0), 900.0)
        assert np.allclose(got, (yaw, pitch, roll), atol=0.5), (n, got)
