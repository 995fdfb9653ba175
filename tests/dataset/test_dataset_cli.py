"""`facegen dataset` end to end with the tiny preset: resumable, identical across engines."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

BASE = ["--model", "tiny", "--num-ids", "4", "--images-per-id", "2", "--seed", "11", "--format", "webdataset",
        "--shard-size", "1", "--steps", "2", "--no-progress"]


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "facegen", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, **kw)


def digest(root: Path) -> dict[str, str]:
    files = sorted(root.glob("shards/*.tar")) + [root / "manifest.jsonl"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ref"
    proc = cli("dataset", *BASE, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_dataset_writes_shards_manifest_and_summary(reference):
    d = digest(reference)
    assert len([k for k in d if k.endswith(".tar")]) == 4
    rows = [json.loads(line) for line in (reference / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and len({(r["identity"], r["index"]) for r in rows}) == 8
    assert len({r["seed"] for r in rows}) == 8
    stats = cli("dataset-stats", str(reference), "--json")
    assert stats.returncode == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert summary["accepted"] == 8 if "accepted" in summary else True


def test_batch_size_and_workers_do_not_change_pixels(reference, tmp_path):
    out = tmp_path / "b"
    proc = cli("dataset", *BASE, "--out", str(out), "--batch-size", "3", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert digest(out) == digest(reference)


def test_ray_two_workers_same_samples(reference, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    proc = cli("dataset", *BASE, "--out", str(out), "--engine", "ray", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert digest(out) == digest(reference)


def test_kill_9_then_rerun_is_identical(reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "facegen", "dataset", *BASE, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "shards").glob("*.tar"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list((out / "shards").glob("*.tar"))) < 4          # it really was interrupted
    rerun = cli("dataset", *BASE, "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert digest(out) == digest(reference)


def test_changed_spec_in_same_folder_is_refused(reference):
    proc = cli("dataset", *[a if a != "11" else "12" for a in BASE], "--out", str(reference))
    assert proc.returncode == 2 and "seed" in proc.stderr and "Traceback" not in proc.stderr


def test_spec_file_with_out_flag_and_generator_option_typos(reference, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: tiny\nnum_ids: 4\nimages_per_id: 2\nseed: 11\nformat: webdataset\nshard_size: 1\n"
                    "generator: {steps: 2}\n")
    out = tmp_path / "from-spec"
    proc = cli("dataset", "--spec", str(spec), "--out", str(out), "--no-progress")   # no 'out' in the file
    assert proc.returncode == 0, proc.stderr
    assert digest(out) == digest(reference)                   # the same dataset as the flags made
    spec.write_text(spec.read_text().replace("steps: 2", "stepz: 2"))
    bad = tmp_path / "typo"
    proc = cli("dataset", "--spec", str(spec), "--out", str(bad), "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown generator option(s) stepz" in proc.stderr and "steps" in proc.stderr
    assert not bad.exists()                                   # refused before anything was written


@pytest.mark.parametrize("spec_text, message", [
    ("model: tiny-instantid\nposes: [left]\n", "a pose is a yaw angle"),
    ("model: tiny\nposes: [30]\n", "takes no pose control"),
    ("model: tiny-pulid-sdxl\n", "cannot make dataset identities from sampled vectors"),
])
def test_bad_poses_are_refused_before_anything_is_written(tmp_path, spec_text, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text("num_ids: 2\nimages_per_id: 1\n" + spec_text)
    out = tmp_path / "ds"
    proc = cli("dataset", "--spec", str(spec), "--out", str(out), "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and message in proc.stderr
    assert not out.exists()
