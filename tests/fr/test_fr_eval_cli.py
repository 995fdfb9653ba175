"""``facegen fr-eval`` end to end: the dlib encoder on pairs drawn from real photos, LFW pairs.txt,
groups, and the bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facegen.cli import main
from facegen.fr.pairs import pairs_from_dir

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facegen", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)


def test_pairs_from_dir_is_balanced_seeded_and_identity_disjoint(shared_identity_folders):
    a = pairs_from_dir(shared_identity_folders, seed=1)
    b = pairs_from_dir(shared_identity_folders, seed=1)
    assert np.array_equal(a.left, b.left) and np.array_equal(a.same, b.same)
    assert a.num_folds == 2                     # 4 people: two per fold
    per = len(a) // a.num_folds
    folds = [set() for _ in range(a.num_folds)]
    for k, (x, y) in enumerate(a.identities):
        folds[k // per] |= {x, y}
        chunk = a.same[(k // per) * per:(k // per + 1) * per]
        assert chunk.sum() == per // 2          # half genuine in every fold
    assert not folds[0] & folds[1]
    assert not np.array_equal(pairs_from_dir(shared_identity_folders, seed=2).left, a.left)


@pytest.mark.slow
def test_dlib_scores_real_pairs(tmp_path, shared_identity_folders):
    out = tmp_path / "eval"
    groups = tmp_path / "groups.csv"
    groups.write_text("identity,group\nalex_lacamoire,A\nlin_manuel_miranda,A\nbiden,B\nobama,B\n")
    code = main(["fr-eval", "--encoder", "dlib-resnet-v1", "--pairs-from", str(shared_identity_folders),
                 "--groups", str(groups), "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    row = report["sets"][shared_identity_folders.name]
    assert row["accuracy"] >= 0.95, row
    assert set(row) >= {"pairs", "accuracy", "accuracy_std", "eer", "tar_at_far"}
    assert row["eer"] < 0.1
    assert set(row["groups"]["groups"]) <= {"A", "B"}
    assert (out / "eval.md").read_text().startswith("# Face verification: dlib-resnet-v1")
    assert (out / "roc.png").stat().st_size > 1000


def _lfw_layout(root: Path, people: Path) -> Path:
    """LFW's layout (name/name_0001.jpg) and a pairs.txt over it."""
    images = root / "lfw"
    names = sorted(p.name for p in people.iterdir())
    for name in names:
        (images / name).mkdir(parents=True)
        for k, f in enumerate(sorted((people / name).iterdir()), start=1):
            (images / name / f"{name}_{k:04d}.jpg").write_bytes(f.read_bytes())
    lines = ["2 10"]
    for fold in range(2):
        for i in range(5):
            n = names[(i + fold) % len(names)]
            lines.append(f"{n} 1 {2 + (i % 3)}")
        for i in range(5):
            a, b = names[i % len(names)], names[(i + 1 + fold) % len(names)]
            lines.append(f"{a} {1 + i % 2} {b} 2")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return images


def test_pairs_txt_with_a_trained_run_and_bin(tmp_path, shared_identity_folders, tiny_run):
    images = _lfw_layout(tmp_path, shared_identity_folders)
    code = main(["fr-eval", "--model", str(tiny_run), "--pairs", str(tmp_path / "pairs.txt"), "--images", str(images),
                 "--out", str(tmp_path / "ev"), "--no-progress", "--no-plots"])
    assert code == 0
    row = json.loads((tmp_path / "ev" / "eval.json").read_text())["sets"]["pairs"]
    assert row["pairs"] == 20 and row["folds"] == 2 and 0 <= row["accuracy"] <= 1


def _bad(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "never"
    proc = run_cli("fr-eval", *args, "--out", str(out), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not out.exists()
    return lines[0]


def test_bad_inputs_one_line_nothing_written(tmp_path, shared_identity_folders):
    other = tmp_path / "other.bin"
    other.write_bytes(pickle.dumps({"images": []}))
    assert "not an insightface verification .bin" in _bad(tmp_path, "--encoder", "dlib-resnet-v1", "--bin", str(other))
    notrun = tmp_path / "notrun"
    notrun.mkdir()
    assert "not a face-recognition run" in _bad(tmp_path, "--model", str(notrun), "--pairs-from",
                                                str(shared_identity_folders))
    groups = tmp_path / "g.csv"
    groups.write_text("obama,A\nnobody_at_all,B\n")
    assert "nobody_at_all" in _bad(tmp_path, "--encoder", "dlib-resnet-v1", "--pairs-from",
                                   str(shared_identity_folders), "--groups", str(groups))
    assert "nothing to score" in _bad(tmp_path, "--encoder", "dlib-resnet-v1")
