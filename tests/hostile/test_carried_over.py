"""Item 14 of issue 29 (carried over from the first hostile round): devices, swap choices checked
before any model loads, and a full disk."""

from __future__ import annotations

import errno

import pytest

from facegen.errors import InvalidArgumentError

from conftest import assert_one_line_error, cli


@pytest.mark.parametrize("device", ["tpu", "xla", "meta", "cuda:99", "gpu0", "cpu:x"])
def test_an_unknown_or_unusable_device_is_one_line(device):
    from facegen.pipelines.runtime import resolve_device

    with pytest.raises(InvalidArgumentError, match="device"):
        resolve_device(device)


def test_generate_with_device_tpu_is_one_line(capfd, tom_hanks_path, tmp_path):
    rc, _, err = cli(capfd, "generate", "--model", "tiny", "--device", "tpu", "--id", tom_hanks_path,
                     "--out", tmp_path / "o", "--steps", "1")
    assert_one_line_error(rc, err, "tpu")


@pytest.mark.parametrize("extra, message", [(["--target-face", "abc"], "face policy"),
                                            (["--reference", "r1.png", "--reference", "r2.png"], "reference photos")])
def test_swap_choices_are_checked_before_the_model_loads(capfd, monkeypatch, tom_hanks_path, tmp_path, extra,
                                                         message):
    import facegen.cli.jobs as jobs

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(jobs, "load_pipeline", no_load)
    args = ["swap", "--model", "tiny", "--source", tom_hanks_path, "--target", tom_hanks_path, "--consent",
            "--out", tmp_path / "o.png"]
    extra = [str(tom_hanks_path) if e.endswith(".png") else e for e in extra]
    rc, _, err = cli(capfd, *args, *extra)
    assert_one_line_error(rc, err, message)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_disk_full_is_one_line_not_an_internal_failure(capfd, code):
    from facegen.cli import run_command

    def full(args):
        raise OSError(code, "No space left on device", "/data/ds/shards/shard-000003.tar.tmp")

    capfd.readouterr()
    rc = run_command(full, None)
    err = capfd.readouterr().err
    assert_one_line_error(rc, err, "shard-000003")
    assert "internal failure" not in err


def test_dataset_run_on_a_full_disk_is_one_line(capfd, monkeypatch, tmp_path):
    from facegen.io import atomic as W             # the one atomic writer every dataset location writes with

    real = W.atomic_write_bytes
    calls = {"n": 0}

    def write(path, data, *a, **k):
        calls["n"] += 1
        if "shard" in str(path) or calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, *a, **k)

    monkeypatch.setattr(W, "atomic_write_bytes", write)
    rc, _, err = cli(capfd, "dataset", "--model", "tiny", "--num-ids", "2", "--images-per-id", "1",
                     "--out", tmp_path / "ds", "--no-progress")
    assert_one_line_error(rc, err, "No space left")


@pytest.mark.parametrize("out", ["/etc/facegen-hostile-ds", "/usr/lib/facegen-hostile-ds", "/proc/facegen-ds"])
def test_a_dataset_is_never_written_into_a_system_folder(capfd, out):
    """A spec whose ``out`` lies in a system folder (as root it was created there without a word)
    is refused in one line before anything is written."""
    import os

    rc, _, err = cli(capfd, "dataset", "--model", "tiny", "--num-ids", "2", "--images-per-id", "1",
                     "--out", out, "--no-progress")
    assert_one_line_error(rc, err, "system folder")
    assert not os.path.exists(out)


def test_the_python_api_refuses_a_system_folder_too():
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    with pytest.raises(InvalidArgumentError, match="system folder"):
        run_dataset(DatasetSpec(out="/etc/facegen-hostile-api", model="tiny", num_ids=2, images_per_id=1),
                    lambda items: [], progress=False)
