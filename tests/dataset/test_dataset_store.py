"""Datasets written straight to object storage: ``--out s3://…`` against a real local S3 server
(moto in server mode, the ``s3_bucket`` fixture of conftest), object for object the same as a
local folder, resumable after ``kill -9``, locked, retried, and never writing a credential."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FAKE_S3_SECRET, REPO

pytest.importorskip("s3fs")
pytest.importorskip("moto")

BASE = ["--model", "tiny", "--num-ids", "4", "--images-per-id", "2", "--seed", "11", "--format", "webdataset",
        "--shard-size", "1", "--steps", "2", "--no-progress"]
#: files whose bytes depend on the run, not only the spec (where it ran, how long; the seal's signature)
RUN_DEPENDENT = {"summary.json", "credentials.zip"}


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | str = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facegen", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**(env or os.environ), "PYTHONPATH": str(REPO)})


def folder_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_dataset(objects: dict[str, bytes], files: dict[str, bytes]) -> None:
    """Object for object: the same names, the same bytes (the run-dependent files: the same facts)."""
    assert sorted(objects) == sorted(files)
    for name in sorted(files):
        if name not in RUN_DEPENDENT:
            assert objects[name] == files[name], name
    a, b = json.loads(objects["summary.json"]), json.loads(files["summary.json"])
    for run_field in ("out", "seconds", "images_per_second", "shards_skipped", "shards_redone"):
        a.pop(run_field, None), b.pop(run_field, None)
    assert a == b


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("store") / "ref"
    proc = cli("dataset", *BASE, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return folder_files(out)


def test_s3_run_equals_a_local_folder_run_and_writes_no_secret(local_reference, s3_bucket, tmp_path) -> None:
    url = f"{s3_bucket.url}/ds"
    proc = cli("-vv", "dataset", *BASE, "--out", url, env=s3_bucket.env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    objects = s3_bucket.objects("ds/")
    assert_same_dataset({k[len("ds/"):]: v for k, v in objects.items()}, local_reference)
    assert not any(tmp_path.iterdir())                      # no local folder 's3:' (the old bug)
    # the secret is in the environment of the run, and in nothing it wrote or logged (debug included)
    assert FAKE_S3_SECRET in s3_bucket.env["AWS_SECRET_ACCESS_KEY"]
    for name, data in objects.items():
        assert FAKE_S3_SECRET.encode() not in data, name
    assert FAKE_S3_SECRET not in proc.stdout + proc.stderr
    assert "DEBUG" in proc.stderr                          # the debug log really was on

    stats = cli("dataset-stats", url, "--json", env=s3_bucket.env)
    assert stats.returncode == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert summary["accepted"] == 8 and summary["shards_done"] == 4 and summary["out"] == url


def test_imagefolder_on_s3_equals_local(s3_bucket, tmp_path) -> None:
    """In-process, with a null generator: one object per image, the same as the folder's files."""
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    def gen(items):
        return [np.random.default_rng(it.seed).integers(0, 256, (24, 24, 3), dtype=np.uint8) for it in items]

    spec = dict(model="tiny", num_ids=3, images_per_id=2, seed=4, format="imagefolder", shard_size=2)
    run_dataset(DatasetSpec(out=str(tmp_path / "ds"), **spec), gen, progress=False)
    run_dataset(DatasetSpec(out=f"{s3_bucket.url}/img", **spec), gen, progress=False)
    objects = {k[len("img/"):]: v for k, v in s3_bucket.objects("img/").items()}
    assert "images/000002/001.png" in objects
    assert_same_dataset(objects, folder_files(tmp_path / "ds"))


@pytest.mark.slow
def test_kill_9_then_rerun_on_s3_is_identical_with_no_stray_object(local_reference, s3_bucket) -> None:
    url = f"{s3_bucket.url}/killed"
    cmd = [sys.executable, "-m", "facegen", "dataset", *BASE, "--out", url]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**s3_bucket.env, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(s3_bucket.keys("killed/shards/")) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(s3_bucket.keys("killed/shards/")) < 4                      # it really was interrupted
    assert "killed/.lock" in s3_bucket.keys("killed/")                      # and left its lock behind
    rerun = cli("dataset", *BASE, "--out", url, env=s3_bucket.env)
    assert rerun.returncode == 0, rerun.stderr
    assert "stale lock" in rerun.stderr                                     # a dead pid of this host
    objects = {k[len("killed/"):]: v for k, v in s3_bucket.objects("killed/").items()}
    assert_same_dataset(objects, local_reference)                           # no .lock, no partial object


@pytest.mark.slow
def test_ray_two_local_workers_write_their_shards_to_the_bucket(local_reference, s3_bucket) -> None:
    pytest.importorskip("ray")
    url = f"{s3_bucket.url}/ray"
    proc = cli("dataset", *BASE, "--out", url, "--engine", "ray", "--workers", "2", env=s3_bucket.env)
    assert proc.returncode == 0, proc.stderr
    objects = {k[len("ray/"):]: v for k, v in s3_bucket.objects("ray/").items()}
    assert_same_dataset(objects, local_reference)


def test_a_failing_put_is_retried(s3_bucket, monkeypatch, caplog) -> None:
    """A store that refuses one upload (a dropped connection) and one small PUT: retried with back-off."""
    import s3fs

    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec
    from facegen.io import store

    monkeypatch.setattr(store, "BACKOFF_S", 0.01)
    failures = {"_put_file": 1, "_pipe_file": 1}
    for name in failures:
        original = getattr(s3fs.S3FileSystem, name)

        async def flaky(self, *args, _name=name, _original=original, **kwargs):
            if failures[_name]:
                failures[_name] -= 1
                raise ConnectionResetError(104, "Connection reset by peer (injected)")
            return await _original(self, *args, **kwargs)
        monkeypatch.setattr(s3fs.S3FileSystem, name, flaky)
    s3fs.S3FileSystem.clear_instance_cache()    # a cached filesystem bound its sync methods before the patch

    def gen(items):
        return [np.full((16, 16, 3), it.identity, np.uint8) for it in items]

    spec = DatasetSpec(out=f"{s3_bucket.url}/flaky", model="tiny", num_ids=2, images_per_id=2, seed=1,
                       format="webdataset", shard_size=1)
    with caplog.at_level(logging.WARNING, logger="facegen.io.store"):
        summary = run_dataset(spec, gen, progress=False)
    assert failures == {"_put_file": 0, "_pipe_file": 0}
    assert summary.complete and summary.accepted == 4
    assert sum("injected" in r.getMessage() and "try 1 of" in r.getMessage() for r in caplog.records) == 2
    assert len(s3_bucket.keys("flaky/shards/")) == 2


def test_no_bucket_and_access_denied_are_one_line_exit_2_before_any_work(s3_bucket, tmp_path) -> None:
    from moto import settings

    gone = cli("dataset", *BASE, "--out", "s3://facegen-no-such-bucket/ds", env=s3_bucket.env, cwd=tmp_path)
    assert gone.returncode == 2 and "Traceback" not in gone.stderr
    assert gone.stderr.strip().splitlines()[-1].startswith("error: ") and "does not exist" in gone.stderr
    old = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0     # the server now checks credentials: ours are unknown to it
    try:
        denied = cli("dataset", *BASE, "--out", f"{s3_bucket.url}/ds", env=s3_bucket.env, cwd=tmp_path)
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = old
    lines = denied.stderr.strip().splitlines()
    assert denied.returncode == 2 and "Traceback" not in denied.stderr
    assert lines[-1].startswith("error: ") and "access denied" in lines[-1] and FAKE_S3_SECRET not in denied.stderr
    assert "identities" not in denied.stderr                         # nothing was sampled or generated
    assert s3_bucket.keys() == [] and not any(tmp_path.iterdir())


def test_bad_store_urls_are_refused() -> None:
    from facegen.errors import InvalidArgumentError
    from facegen.io.location import LocalLocation, open_location

    for bad in ("s3://AKIA:secret@bucket/ds", "s3://bucket/ds?versionId=1", "s3://", "s3://bucket/../x"):
        with pytest.raises(InvalidArgumentError) as err:
            open_location(bad)
        assert "secret" not in str(err.value)
    assert isinstance(open_location("file:///tmp/x"), LocalLocation)


def test_two_runs_on_one_prefix_the_second_is_refused(s3_bucket) -> None:
    from facegen.io.location import open_location
    from facegen.io.store import StoreLock

    loc = open_location(f"{s3_bucket.url}/busy")
    with StoreLock(loc):                     # held by this (live) process, as a running first run would
        proc = cli("dataset", *BASE, "--out", loc.url, env=s3_bucket.env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "being written by another facegen dataset run" in proc.stderr and f"pid {os.getpid()}" in proc.stderr
        assert s3_bucket.keys("busy/") == ["busy/.lock"]          # the refused run wrote nothing
    assert s3_bucket.keys("busy/") == []


def test_store_lock_rules(s3_bucket, monkeypatch) -> None:
    """Of runs racing for the lock, exactly one gets it (conditional put); a lock of a dead pid on
    this host, or one not renewed for the stale time, is taken over; a fresh one of another host is not."""
    from facegen.io.location import open_location
    from facegen.io.store import StoreLock, StoreLockedError

    loc = open_location(f"{s3_bucket.url}/race")
    won: list[bool] = []

    def take() -> None:
        try:
            StoreLock(loc).acquire()
            won.append(True)
        except StoreLockedError:
            won.append(False)
    threads = [threading.Thread(target=take) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(won) == [False, False, False, True]

    other = {"pid": 1, "host": "another-host", "started": "2026-12-07T00:00:00Z"}
    loc2 = open_location(f"{s3_bucket.url}/other")
    loc2.write_bytes(".lock", json.dumps(other).encode())
    with pytest.raises(StoreLockedError, match="another-host"):
        StoreLock(loc2).acquire()
    monkeypatch.setenv("FACEGEN_STORE_LOCK_STALE_S", "0")               # ... until it is stale
    lock = StoreLock(loc2).acquire()
    assert json.loads(loc2.read_bytes(".lock"))["pid"] == os.getpid()
    lock.release()
    assert not loc2.exists(".lock")


def test_dataset_report_and_load_dataset_read_the_bucket(s3_bucket, tmp_path, monkeypatch) -> None:
    from facegen.dataset.card import CARD_FILE
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec
    from facegen.io.location import open_location

    def gen(items):
        return [np.random.default_rng(it.seed).integers(0, 256, (32, 32, 3), dtype=np.uint8) for it in items]

    url = f"{s3_bucket.url}/rep"
    run_dataset(DatasetSpec(out=url, model="tiny", num_ids=2, images_per_id=2, seed=3, format="webdataset",
                            shard_size=1), gen, progress=False)
    rep = cli("dataset-report", url, "--no-progress", "--no-plots", env=s3_bucket.env)
    assert rep.returncode == 0, rep.stderr
    keys = s3_bucket.keys("rep/")
    assert {"rep/report/report.json", "rep/report/report.md", "rep/report/images.jsonl"} <= set(keys)
    r = json.loads(s3_bucket.objects("rep/report/report.json")["rep/report/report.json"])
    assert r["images"] == 4 and r["identities"] == 2 and r["dataset"]["path"] == url
    card = s3_bucket.objects(f"rep/{CARD_FILE}")[f"rep/{CARD_FILE}"].decode()
    assert "Not measured yet" not in card

    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)   # the suite is offline; the bucket is local
    from facegen.dataset.card import read_card_header

    local_card = tmp_path / CARD_FILE
    local_card.write_bytes(open_location(url).read_bytes(CARD_FILE))
    config = read_card_header(local_card)["configs"][0]
    files = {f["split"]: f"{url}/{f['path']}" for f in config["data_files"]}
    ds = datasets.load_dataset("webdataset", data_files=files, split="train", cache_dir=str(tmp_path / "hf"),
                               storage_options={"client_kwargs": {"endpoint_url": s3_bucket.env["AWS_ENDPOINT_URL"]}})
    assert len(ds) == 4 and {"png", "json"} <= set(ds.column_names)
    assert sorted(row["json"]["identity"] for row in ds) == [0, 0, 1, 1]
