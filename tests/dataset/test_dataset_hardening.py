"""Hostile inputs to the dataset job (issue 17): spec values of the wrong type or size, YAML
alias bombs and deep nesting, damaged finished shards, two runs on one folder, failed starts,
workers outliving a killed parent, prompts for presets without text, NaN in manifests."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from facegen.dataset import writers as W
from facegen.dataset.runner import run_dataset
from facegen.dataset.spec import DatasetSpec
from facegen.errors import FacegenError, InvalidArgumentError, ModelNotFoundError
from test_dataset_runner import FakeGenerate, _files, _spec

TESTS = Path(__file__).resolve().parent
LOCKED = "being written by another facegen dataset run"


def _strict_json(line: str):
    def refuse(name: str):
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


# ---------------------------------------------------------------------- spec values (items 12, 14)
BOMB = ("noise_levels: &a [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]\n"
        "poses: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "prompts: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "generator: {x: [*c, *c, *c, *c, *c, *c, *c, *c, *c]}\n")


@pytest.mark.parametrize("text, message", [
    ("max_cosine: '0.4'\n", "max_cosine must be a finite number"),
    ("max_cosine: .nan\n", "max_cosine must be a finite number"),
    ("generator: [1, 2]\n", "generator must be a mapping"),
    ("prompts: 5\n", "prompts must be a list"),
    ("prompts: a photo of a person\n", "prompts must be a list"),
    ("poses: 30\n", "poses must be a list"),
    ("num_ids: 1e9\n", "num_ids must be an integer"),           # YAML 1.1 reads 1e9 as a string
    ("num_ids: 1000000000\n", "num_ids must be an integer >= 1 and <= 1_000_000"),
    ("num_ids: 100000\nimages_per_id: 5000\n", "at most 100_000_000 in one dataset"),
    ("embedding_dim: 100000\n", "embedding_dim must be an integer >= 2 and <= 1024"),
    ("seed: 100000000000000000000000\n", "seed must be an integer"),
    ("workers: true\n", "workers must be an integer"),
    ("filters: 'yes'\n", "filters must be true or false"),
    ("crops: 1\n", "crops must be true or false"),
    ("prior: 5\n", "prior must be a string"),
    ("noise_levels: [.nan, 0.5, 0.7]\n", "noise_levels must be a finite number"),
    ("noise_levels: [0.3, 0.5, x]\n", "noise_levels must be a finite number"),
    ("dedup_similarity: .inf\n", "dedup_similarity must be a finite number"),
    ("prompts: ['" + "x" * 1001 + "']\nmodel: tiny-faceid\n", "a prompt has 1001 characters: at most 1000"),
    ("generator: {steps: 10000}\n", "steps must be an integer >= 1 and <= 200"),
    ("generator: {steps: 2.5}\n", "steps must be an integer"),
    ("generator: {guidance_scale: .nan}\n", "guidance_scale must be a finite number"),
    ("generator: {guidance_scale: .inf}\n", "guidance_scale must be a finite number"),
    ("generator: {id_norm: -3}\n", "id_norm must be a finite number > 0"),
    ("generator: {batched: 'no'}\n", "batched must be true or false"),
    ("generator: {steps: [1, 2]}\n", "generator option steps must be a number"),
    ("model: tiny-instantid\nposes: [.nan]\n", "must be JSON values (finite numbers"),
    ("generator: {a: &x 1, b: *x}\n", "anchors and aliases"),
    (BOMB, "anchors and aliases"),
    ("generator: {x: " + "[" * 5000 + "]" * 5000 + "}\n", "nested more than 8 levels deep"),
])
def test_hostile_spec_values_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(".", r"\.")):
        DatasetSpec.from_yaml(path, out=tmp_path / "ds").validate()


@pytest.mark.parametrize("text, message", [
    ("out: null\n", "needs 'out'"),
    ("out: 5\n", "out must be a folder path"),
    ("out: [a, b]\n", "out must be a folder path"),
    ("out: ''\n", "out must be a folder path"),
    ("1: 2\n", "unknown dataset spec field"),
])
def test_out_must_be_a_path(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgumentError, match=message):
        DatasetSpec.from_yaml(path).validate()


def test_binary_and_oversized_spec_files_and_the_limits_variable(tmp_path: Path, monkeypatch) -> None:
    binary = tmp_path / "spec.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InvalidArgumentError, match="not a text file"):
        DatasetSpec.from_yaml(binary, out=tmp_path / "ds")
    big = tmp_path / "big.yaml"
    big.write_text("num_ids: 2\n" + "# padding\n" * 30)
    monkeypatch.setenv("FACEGEN_DATASET_LIMITS", "spec_bytes=100, num_ids=2000000")
    with pytest.raises(InvalidArgumentError, match="the limit is 100 bytes, set by FACEGEN_DATASET_LIMITS"):
        DatasetSpec.from_yaml(big, out=tmp_path / "ds")
    DatasetSpec(out="x", num_ids=1_500_000, images_per_id=1).validate()   # the raised limit
    monkeypatch.setenv("FACEGEN_DATASET_LIMITS", "num_idz=3")
    with pytest.raises(InvalidArgumentError, match="FACEGEN_DATASET_LIMITS"):
        DatasetSpec(out="x").validate()


def test_prompts_are_refused_for_a_preset_without_text() -> None:
    with pytest.raises(InvalidArgumentError, match="takes no text prompt"):
        DatasetSpec(out="x", model="tiny", prompts=("a photo of a person",)).resolved()
    assert DatasetSpec(out="x", model="tiny-faceid", prompts=("a photo",)).resolved().prompts == ("a photo",)


def test_json_lines_are_always_json_and_nan_quality_is_not_a_pass(tmp_path: Path) -> None:
    line = W.json_bytes({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}}).decode()
    assert _strict_json(line) == {"a": None, "b": [None, 1.5], "c": {"d": None}}

    def quality(rgb: np.ndarray) -> float:
        return float("nan") if int(rgb[0, 0, 0]) % 2 else 1.0

    root = tmp_path / "ds"
    summary = run_dataset(_spec(root, num_ids=2, images_per_id=4, min_quality=0.5, max_attempts=4), FakeGenerate(),
                          quality_fn=quality, progress=False)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    rows = [_strict_json(x) for x in lines]
    assert summary.rejected_by_reason.get("quality", 0) > 0
    assert all(r["scores"]["quality"] == 1.0 for r in rows)


# ---------------------------------------------------------------------- the CLI: one line, nothing created
def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "facegen", "dataset", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=env)


@pytest.mark.parametrize("spec_bytes, flags, message", [
    (bytes(range(256)) * 4, (), "not a text file"),
    (BOMB.encode(), (), "anchors and aliases"),
    (b"out: [a, b]\n", (), "out must be a folder path"),
    (b"out: ds\ngenerator: [1, 2]\n", (), "generator must be a mapping"),
    (b"out: ds\nnum_ids: 2\nprompts: [a photo]\n", (), "takes no text prompt"),
    (b"out: ds\nnum_ids: 2\nimages_per_id: 1\n", ("--guidance", "nan"), "--guidance: must be a finite number"),
])
def test_cli_refuses_hostile_specs_in_one_line_before_creating_anything(tmp_path: Path, spec_bytes: bytes,
                                                                         flags: tuple, message: str) -> None:
    (tmp_path / "spec.yaml").write_bytes(spec_bytes)
    proc = _cli(tmp_path, "--spec", "spec.yaml", "--no-progress", *flags)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and message in proc.stderr
    assert [x for x in proc.stderr.splitlines() if x.startswith("error:")] == proc.stderr.strip().splitlines()[-1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]   # no folder named ['a', 'b'], None, ds


# ---------------------------------------------------------------------- damaged finished shards (item 3)
@pytest.fixture(scope="module")
def small_refs(tmp_path_factory) -> dict[str, tuple[Path, dict[str, bytes]]]:
    refs = {}
    for fmt in ("webdataset", "imagefolder"):
        root = tmp_path_factory.mktemp("ref") / fmt
        run_dataset(_spec(root, num_ids=4, images_per_id=2, shard_size=2, format=fmt), FakeGenerate(), progress=False)
        refs[fmt] = root, _files(root)
    return refs


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _zero(p: Path) -> None:
    p.write_bytes(bytes(p.stat().st_size))


def _flip_last_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt, rel, damage, redone", [
    ("webdataset", "shards/shard-000001.tar", _truncate, 1),
    ("webdataset", "parts/shard-000000.jsonl", lambda p: p.write_bytes(b""), 1),
    ("imagefolder", "images/000002/001.png", _zero, 1),
    ("imagefolder", "identities.npy", _flip_last_byte, 0),
])
def test_damaged_finished_files_are_found_and_redone(tmp_path: Path, small_refs, caplog, fmt: str, rel: str,
                                                     damage, redone: int) -> None:
    ref_root, ref = small_refs[fmt]
    root = tmp_path / "ds"
    shutil.copytree(ref_root, root)
    damage(root / rel)
    with caplog.at_level(logging.WARNING, logger="facegen.dataset.runner"):
        summary = run_dataset(_spec(root, num_ids=4, images_per_id=2, shard_size=2, format=fmt), FakeGenerate(),
                              progress=False)
    assert _files(root) == ref                                # repaired byte for byte
    assert summary.accepted == 8 and summary.shards_redone == redone
    assert any(rel in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


# ---------------------------------------------------------------------- failed starts (item 5)
class _MissingWeights(FakeGenerate):
    def __call__(self, items):
        raise ModelNotFoundError("preset 'x'", ["unet/diffusion_pytorch_model.safetensors"], "/models")


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    real = tmp_path / "real.npy"
    np.save(real, np.ones((5, 7), np.float32))            # embeddings of the wrong dimension
    root = tmp_path / "ds"
    with pytest.raises(InvalidArgumentError, match="reject_near"):
        run_dataset(_spec(root, num_ids=2, images_per_id=1, reject_near=str(real)), FakeGenerate(), progress=False)
    assert not root.exists()
    with pytest.raises(ModelNotFoundError):                # fails at the first image
        run_dataset(_spec(root, num_ids=2, images_per_id=1), _MissingWeights(), progress=False)
    assert not root.exists()
    root.mkdir()                                           # an empty folder of the user's stays, empty
    with pytest.raises(ModelNotFoundError):
        run_dataset(_spec(root, num_ids=2, images_per_id=1), _MissingWeights(), progress=False)
    assert root.is_dir() and not list(root.iterdir())
    # the corrected spec is not "a different spec"
    assert run_dataset(_spec(root, num_ids=2, images_per_id=1, seed=3), FakeGenerate(), progress=False).accepted == 2


def test_a_failed_start_on_the_accelerate_engine_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(ModelNotFoundError):
        run_dataset(_spec(root, num_ids=2, images_per_id=1), _MissingWeights(), engine="accelerate", progress=False)
    assert not root.exists()


def test_accelerate_ranks_clear_a_failed_start_and_keep_a_finished_shard(tmp_path: Path) -> None:
    """Two CPU ranks.  No shard finished: once both ranks stopped, the main one removes what the
    start wrote (rank 1, without a shard of its own, fails with one line).  Rank 1 failed after
    rank 0 finished its shard: the folder stays, and resumes."""
    one, two = tmp_path / "one", tmp_path / "two"
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from test_dataset_runner import FakeGenerate, _spec
        from facegen.dataset.runner import run_dataset
        from facegen.errors import ModelNotFoundError

        class Missing(FakeGenerate):
            def __call__(self, items):
                raise ModelNotFoundError("preset 'x'", ["unet/diffusion_pytorch_model.safetensors"], "/models")

        def attempt(root, gen, shard_size):
            try:
                run_dataset(_spec(Path(root), num_ids=2, images_per_id=1, shard_size=shard_size), gen,
                            engine="accelerate", progress=False)
                return "ok"
            except Exception as exc:
                return type(exc).__name__

        rank = int(os.environ["RANK"])
        first = attempt({str(one)!r}, Missing(), shard_size=2)             # one shard, rank 0's
        second = attempt({str(two)!r}, Missing() if rank else FakeGenerate(), shard_size=1)
        print(f"rank {{rank}}: {{first}} {{second}}", flush=True)
    """))
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script)], check=False, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0: ModelNotFoundError FacegenError" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "rank 1: FacegenError ModelNotFoundError" in proc.stdout, proc.stdout
    assert not one.exists()
    assert W.files_path(two, 0).is_file() and not W.files_path(two, 1).exists() and not (two / ".lock").exists()
    summary = run_dataset(_spec(two, num_ids=2, images_per_id=1, shard_size=1), FakeGenerate(), progress=False)
    assert summary.accepted == 2 and summary.shards_skipped == 1


def test_every_engine_of_a_spec_is_registered() -> None:
    from facegen.dataset import engines, spec

    assert tuple(engines.ENGINES) == spec.ENGINES


# ---------------------------------------------------------------------- two runs, one folder (item 4)
def _start_run(tmp_path: Path, root: Path, delay: float, workers: int = 1) -> subprocess.Popen:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from test_dataset_runner import FakeGenerate, _spec
        from facegen.dataset.runner import run_dataset
        if __name__ == "__main__":
            run_dataset(_spec(Path({str(root)!r}), batch_size=1), FakeGenerate(delay={delay}), workers={workers},
                        progress=False)
    """))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(proc: subprocess.Popen, cond, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_second_run_on_a_folder_is_refused_and_a_dead_runs_lock_is_stale(tmp_path: Path, caplog) -> None:
    root = tmp_path / "ds"
    proc = _start_run(tmp_path, root, delay=0.2)
    try:
        _wait_for(proc, lambda: list((root / ".tmp").glob("shard-*")), "the first run to start a shard")
        with pytest.raises(FacegenError, match=LOCKED) as info:
            run_dataset(_spec(root), FakeGenerate(), progress=False)
        assert f"pid {proc.pid} on host {socket.gethostname()}" in str(info.value)
        assert str(root / ".lock") in str(info.value)
        with pytest.raises(FacegenError, match=f"{LOCKED}|different spec"):    # another seed: not mixed in
            run_dataset(_spec(root, seed=12), FakeGenerate(), progress=False)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (root / ".lock").is_file()                      # left behind by kill -9
    with caplog.at_level(logging.WARNING, logger="facegen.dataset.lock"):
        run_dataset(_spec(root), FakeGenerate(), progress=False)
    assert any("stale lock" in r.getMessage() and f"pid {proc.pid}" in r.getMessage() for r in caplog.records)
    ref = tmp_path / "ref"
    run_dataset(_spec(ref), FakeGenerate(), progress=False)
    assert _files(root) == _files(ref) and not (root / ".lock").exists()


def test_two_starts_racing_on_a_new_folder_never_mix_their_seeds(tmp_path: Path, monkeypatch) -> None:
    """Run B (seed 12) checks the new folder, then run A (seed 11) starts and finishes it
    while B samples its identities: B must then refuse the folder, not report A's dataset done."""
    from facegen.dataset import start

    root = tmp_path / "ds"
    sample = start.identity_vectors
    other: dict[str, object] = {}

    def sample_while_another_run_starts(spec):
        if "a" not in other and spec.seed == 12:
            try:
                other["a"] = run_dataset(_spec(root, num_ids=2, images_per_id=1, seed=11), FakeGenerate(),
                                         progress=False)
            except FacegenError as exc:
                other["a"] = exc
        return sample(spec)

    monkeypatch.setattr(start, "identity_vectors", sample_while_another_run_starts)
    with pytest.raises(InvalidArgumentError, match=r"different spec \(changed: seed\)"):
        run_dataset(_spec(root, num_ids=2, images_per_id=1, seed=12), FakeGenerate(), progress=False)
    assert getattr(other["a"], "accepted", None) == 2, other["a"]
    assert DatasetSpec.from_yaml(root / "spec.yaml", out=root).seed == 11
    rows = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and not (root / ".lock").exists()


def test_a_lock_file_of_a_dead_process_in_an_empty_folder_is_taken_over(tmp_path: Path, caplog) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    root = tmp_path / "ds"
    root.mkdir()
    (root / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                            "started": "2026-12-01T00:00:00Z"}))
    with caplog.at_level(logging.WARNING, logger="facegen.dataset.lock"):
        assert run_dataset(_spec(root, num_ids=2, images_per_id=1), FakeGenerate(), progress=False).accepted == 2
    assert any("stale lock" in r.getMessage() for r in caplog.records)
    assert not (root / ".lock").exists()


# ---------------------------------------------------------------------- workers die with the parent (item 6)
def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _workers_of(parent: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        stat = _proc_stat(int(d.name))
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if stat is not None and int(stat[1]) == parent and b"spawn_main" in cmd:
            found.append(int(d.name))
    return found


def _running(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent_after_kill_9(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    proc = _start_run(tmp_path, root, delay=1.0, workers=2)
    workers: list[int] = []
    try:
        _wait_for(proc, lambda: len(list((root / ".tmp").glob("shard-*"))) >= 2, "both workers to start a shard")
        workers = _workers_of(proc.pid)
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 5
        while any(_running(w) for w in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(_running(w) for w in workers), "workers outlived their parent"
    finally:
        for w in workers:
            if _running(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
