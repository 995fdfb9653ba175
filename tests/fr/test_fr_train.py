"""``facegen fr-train``: a run folder that is an encoder, resume after kill -9 with the same final
weights, bad inputs in one line, and (slow) that it learns identity rather than images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from facegen.cli import main

REPO = Path(__file__).resolve().parents[2]
FAST = ["--recipe", "cpu-test", "--image-size", "16", "--batch-size", "8", "--no-progress", "--no-plots"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "facegen", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_trains_a_run_that_is_an_encoder(tmp_path, small_identity_set):
    run = tmp_path / "run"
    assert main(["fr-train", str(small_identity_set), "--out", str(run), *FAST, "--max-steps", "6",
                 "--log-every", "2"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["arch"] == "tiny" and cfg["input_size"] == 16 and cfg["steps"] == 6 and cfg["identities"] == 12
    log = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6] and all(r["images_per_s"] > 0 and r["loss"] > 0 for r in log)
    assert not (run / "checkpoint.pt").exists()
    weights = load_file(str(run / "model.safetensors"))
    assert "fc.weight" in weights and not any(k.startswith(("inner", "W")) for k in weights)   # backbone only
    from facegen.id.encoders import get_analyzer

    crop = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(next(small_identity_set.rglob("*.png"))))
    vec = get_analyzer(str(run)).embedder.embed_crops([crop])
    assert vec.shape == (1, 128) and np.isfinite(vec).all()
    # the same folder again: refused, nothing touched
    assert main(["fr-train", str(small_identity_set), "--out", str(run), *FAST]) == 2


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_weights(tmp_path, small_identity_set):
    args = [str(small_identity_set), *FAST, "--max-steps", "40", "--checkpoint-every", "4", "--seed", "5"]
    whole = tmp_path / "whole"
    assert subprocess.run(_cmd("fr-train", *args, "--out", str(whole)), env=_env(), cwd=REPO,
                          capture_output=True, timeout=600).returncode == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cmd("fr-train", *args, "--out", str(cut)), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (cut / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (cut / "checkpoint.pt").exists() and not (cut / "model.safetensors").exists(), "killed too late"
    done = subprocess.run(_cmd("fr-train", *args, "--out", str(cut)), env=_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and "resumed from step" in done.stdout, done.stderr
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    steps = [json.loads(line)["step"] for line in (cut / "train.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 40          # no step logged twice


def _bad(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "never"
    proc = subprocess.run(_cmd("fr-train", *args, "--out", str(out), "--no-progress"), env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not out.exists()
    return lines[0]


def test_bad_datasets_one_line_nothing_written(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty" in _bad(tmp_path, str(empty))
    one = tmp_path / "one"
    from tests.fr.procedural import make_identity_set

    make_identity_set(one, 1, 3, seed=0)
    assert "needs at least two" in _bad(tmp_path, str(one))


def test_unreadable_images_are_counted_not_fatal(tmp_path, small_identity_set):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(small_identity_set, ds)
    for k, d in enumerate(sorted(ds.iterdir())[:3]):
        (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    run = tmp_path / "run"
    assert main(["fr-train", str(ds), "--out", str(run), *FAST, "--max-steps", "6", "--no-align"]) == 0
    assert json.loads((run / "config.json").read_text())["unreadable_images"] >= 1


def test_run_is_an_encoder_for_dataset_report(tmp_path, small_identity_set, tiny_run):
    out = tmp_path / "rep"
    assert main(["dataset-report", str(small_identity_set), "--encoder", str(tiny_run), "--out", str(out),
                 "--no-plots", "--no-progress", "--workers", "1"]) in (0,)
    report = json.loads((out / "report.json").read_text())
    assert report["encoder"] == str(tiny_run.resolve())


@pytest.mark.slow
def test_it_learns_identity_not_images(tmp_path):
    """A few hundred CPU steps on procedural identities; pairs of identities never seen in training."""
    import torch

    from tests.fr.procedural import make_identity_set

    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # a shared 2-core machine: one thread is the faster
    try:
        train_set = make_identity_set(tmp_path / "train", 100, 6, seed=3)
        unseen = make_identity_set(tmp_path / "unseen", 20, 6, seed=4)
        run = tmp_path / "run"
        assert main(["fr-train", str(train_set), "--out", str(run), "--recipe", "cpu-test", "--max-steps", "200",
                     "--no-progress", "--no-plots"]) == 0
        untrained = tmp_path / "untrained"
        from facegen.fr.recipes import get_recipe
        from facegen.fr.train import build, run_config, write_run

        model, _, _ = build(get_recipe("cpu-test"), 100, 0)
        write_run(untrained, model.eval(), run_config(get_recipe("cpu-test"), None, 0, 0))
        scores = {}
        for name, r in (("trained", run), ("untrained", untrained)):
            assert main(["fr-eval", "--model", str(r), "--pairs-from", str(unseen), "--aligned", "--pairs-per-fold",
                         "100", "--out", str(tmp_path / f"ev-{name}"), "--no-progress", "--no-plots"]) == 0
            scores[name] = json.loads((tmp_path / f"ev-{name}" / "eval.json").read_text())["average_accuracy"]
    finally:
        torch.set_num_threads(threads)
    assert scores["trained"] >= 0.9, scores
    assert scores["untrained"] <= 0.75, scores     # a random network: near chance (pixel layout only)


class _Patterns:
    """A stand-in generator for a facegen dataset: each identity's images are views of one pattern."""

    def __call__(self, items):
        from PIL import Image

        from tests.fr.procedural import identity_pattern, view_of

        out = []
        for it in items:
            pattern = identity_pattern(np.random.default_rng(abs(hash(it.embedding.tobytes())) % 2**32))
            out.append(np.asarray(view_of(pattern, np.random.default_rng(it.seed)).resize((64, 64), Image.BILINEAR)))
        return out


@pytest.mark.slow
def test_trains_on_facegen_webdataset_and_eval_fills_its_card(tmp_path, small_identity_set):
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    root = tmp_path / "ds"
    spec = DatasetSpec(out=str(root), model="tiny", num_ids=6, images_per_id=3, seed=2, shard_size=6,
                       format="webdataset")
    run_dataset(spec, _Patterns(), progress=False)
    assert list((root / "shards").glob("*.tar"))
    run = tmp_path / "run"
    assert main(["fr-train", str(root), "--out", str(run), *FAST, "--max-steps", "4", "--batch-size", "6",
                 "--no-align"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["identities"] == 6 and cfg["images"] == 18 and cfg["dataset_fingerprint"]
    assert main(["fr-eval", "--model", str(run), "--pairs-from", str(small_identity_set), "--aligned",
                 "--pairs-per-fold", "20", "--out", str(tmp_path / "ev"), "--no-progress", "--no-plots"]) == 0
    card = (root / "README.md").read_text()
    assert "## Trained model" in card and small_identity_set.name in card


@pytest.mark.slow
def test_two_cpu_processes_train_the_same_global_batch(tmp_path, small_identity_set):
    """Two processes (torchrun's environment, which accelerate's Accelerator reads; on GPUs
    `accelerate launch --multi_gpu`) split each global batch: the loss curve stays that of one process
    within 15 % on its mean (each process normalises its half batch with its own BatchNorm statistics)."""
    import shutil

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    args = [str(small_identity_set), *FAST, "--max-steps", "12", "--log-every", "2", "--device", "cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert subprocess.run(_cmd("fr-train", *args, "--out", str(one)), env=_env(), cwd=REPO,
                          capture_output=True, timeout=600).returncode == 0
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "facegen", "fr-train", *args, "--out", str(two)],
                          env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((two / "config.json").read_text())["processes"] == 2
    from facegen.fr.train import mean_loss

    a, b = mean_loss(one / "train.jsonl"), mean_loss(two / "train.jsonl")
    assert abs(a - b) / a < 0.15, (a, b)
    rows = [json.loads(line) for line in (two / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
