"""Tests for facegen.io.atomic: the one atomic writer (complete file or none, fsync of the file
before the rename and of the folder after, temporaries the dataset resume removes)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from facegen.dataset import writers as W
from facegen.errors import FacegenError
from facegen.io import atomic
from facegen.io.atomic import atomic_write, atomic_write_bytes, is_temp_for, remove_stale_temps, temp_path_for

PACKAGE = Path(__file__).resolve().parents[2] / "facegen"


def _recorded(monkeypatch) -> list[tuple[str, str, os.stat_result]]:
    """Record every os.fsync (what kind of file the descriptor is, and its stat) and
    os.replace, in order, while still doing them."""
    events: list[tuple[str, str, os.stat_result]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", "dir" if stat.S_ISDIR(st.st_mode) else "file", st))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst), os.stat(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    target = tmp_path / "out" / "a.json"
    events = _recorded(monkeypatch)
    assert atomic_write_bytes(target, b'{"a": 1}\n') == target
    assert [(kind, what) for kind, what, _ in events] == [
        ("fsync", "file"), ("replace", str(target)), ("fsync", "dir")]
    file_st, replaced_st, dir_st = (st for _, _, st in events)
    assert os.path.samestat(file_st, replaced_st) and os.path.samestat(file_st, target.stat())
    assert os.path.samestat(dir_st, target.parent.stat())     # the folder the name lives in
    assert target.read_bytes() == b'{"a": 1}\n'


def test_the_file_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old contents")

    def half_then_fail(fh):
        fh.write(b"new, but only half")
        raise RuntimeError("the encoder failed")

    with pytest.raises(RuntimeError, match="the encoder failed"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old contents"              # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]   # the temporary is gone

    def interrupted(fh):
        fh.write(b"x")
        raise KeyboardInterrupt

    fresh = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt):
        atomic_write(fresh, interrupted)
    assert not fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]

    def disk_full(fh):
        raise OSError(28, "No space left on device")

    with pytest.raises(FacegenError, match=r"cannot write .*new\.bin: No space left on device"):
        atomic_write(fresh, disk_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_failed_fsync_or_rename_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    atomic_write_bytes(target, b"one")

    def no_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(FacegenError, match="Input/output error"):
        atomic_write_bytes(target, b"two")
    monkeypatch.undo()
    assert target.read_bytes() == b"one" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_folder_fsync_is_best_effort(tmp_path, monkeypatch):
    """Where a folder cannot be opened (Windows) or fsync'ed (some filesystems: EINVAL), the
    write still succeeds."""
    real_open, real_fsync = os.open, os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_bytes(tmp_path / "a", b"1")

    def open_(path, flags, *args, **kwargs):
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    atomic_write_bytes(tmp_path / "b", b"2")
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"


def test_temp_name_is_beside_the_file_hidden_and_unique(tmp_path):
    target = tmp_path / "parts" / "shard-000001.jsonl"
    first, second = temp_path_for(target), temp_path_for(target)
    assert first.parent == target.parent and first != second
    assert re.fullmatch(rf"\.shard-000001\.jsonl\.tmp-{os.getpid()}-[0-9a-f]{{8}}", first.name)
    assert is_temp_for(first, target) and not is_temp_for(first, target.with_name("shard-000001.json"))
    assert not is_temp_for(target, target)


def test_a_killed_writer_leaves_a_temp_that_the_dataset_resume_removes(tmp_path):
    """A process killed in the middle of an atomic write leaves only its temporary file, named
    so that the resume of the shard (``clean_shard_temps``) finds and removes it."""
    root = tmp_path / "ds"
    atomic_write_bytes(W.stats_path(root, 3), b'{"accepted": 1}\n')      # shard 3: done, kept
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from facegen.dataset import writers as W\n"
        "from facegen.io.atomic import atomic_write\n"
        "root = Path(sys.argv[1])\n"
        "def killed(fh):\n"
        "    fh.write(b'{\"key\": \"000000_000\"')\n"
        "    fh.flush()\n"
        "    os._exit(9)\n"
        "atomic_write(W.part_path(root, int(sys.argv[2])), killed)\n"
    )
    for shard in (2, 3):
        proc = subprocess.run([sys.executable, "-c", script, str(root), str(shard)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 9, proc.stderr
    parts = root / W.PARTS_DIR
    left = sorted(p.name for p in parts.iterdir())
    assert not W.part_path(root, 2).exists()                      # nothing under the final name
    temps2 = [p for p in parts.iterdir() if is_temp_for(p, W.part_path(root, 2))]
    assert len(temps2) == 1 and temps2[0].name.startswith(".shard-000002.jsonl.tmp-"), left

    assert W.clean_shard_temps(root, 2) == 1
    after = sorted(p.name for p in parts.iterdir())
    assert [n for n in after if n.startswith(".shard-000002")] == []
    assert any(n.startswith(".shard-000003.jsonl.tmp-") for n in after)     # another shard's: left alone
    assert "shard-000003.stats.json" in after                                   # finished files: kept
    assert remove_stale_temps(W.part_path(root, 3)) == 1
    assert sorted(p.name for p in parts.iterdir()) == ["shard-000003.stats.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_mode_is_exact_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_bytes(tmp_path / "plain", b"1")
        atomic_write(tmp_path / "cert.pem", lambda fh: fh.write(b"c"), mode=0o644)
    finally:
        os.umask(0o022)
    try:
        atomic_write(tmp_path / "key.pem", lambda fh: fh.write(b"k"), mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o600       # 0o666 less the umask
    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600


def test_threads_writing_one_file_never_mix_their_bytes(tmp_path):
    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 200_000 for i in range(4)]
    start = threading.Barrier(len(payloads))

    def writer(data: bytes) -> None:
        start.wait()
        for _ in range(5):
            atomic_write_bytes(target, data)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_replace_durably_publishes_a_folder_or_a_file_made_elsewhere(tmp_path, monkeypatch):
    work = tmp_path / ".tmp" / "shard-000000.d"
    (work / "000").mkdir(parents=True)
    (work / "000" / "a.png").write_bytes(b"png")
    (tmp_path / "images").mkdir()
    events = _recorded(monkeypatch)
    atomic.replace_durably(work / "000", tmp_path / "images" / "000")
    assert [(kind, what) for kind, what, _ in events] == [
        ("fsync", "dir"), ("replace", str(tmp_path / "images" / "000")), ("fsync", "dir")]
    assert (tmp_path / "images" / "000" / "a.png").read_bytes() == b"png"
    monkeypatch.undo()

    made = tmp_path / ".out.mp4.tmp-made-by-an-encoder"
    made.write_bytes(b"video")
    with pytest.raises(FacegenError, match="cannot write"):
        atomic.replace_durably(made, tmp_path / "missing-folder" / "out.mp4")
    assert not made.exists()                                   # a failed publish leaves no temporary


# --------------------------------------------------------------------------- its callers


def test_shard_commit_fsyncs_the_tar_and_its_folder(tmp_path, monkeypatch):
    writer = W.ShardWriter(tmp_path, 0, "webdataset")
    writer.add("000000_000", 0, 0, W.encode_png(np.zeros((8, 8, 3), np.uint8), {}), {"key": "000000_000"})
    events = _recorded(monkeypatch)
    writer.commit()
    tar = W.tar_path(tmp_path, 0)
    assert [(kind, what) for kind, what, _ in events] == [("fsync", "file"), ("replace", str(tar)), ("fsync", "dir")]
    assert os.path.samestat(events[0][2], tar.stat()) and os.path.samestat(events[2][2], tar.parent.stat())


def test_every_rename_in_facegen_is_the_atomic_writer():
    """The one atomic writer: no other module renames files into place (the tiny model cache
    renames a built folder, refusing to replace one another process built first)."""
    allowed = {"io/atomic.py": 2, "models/tiny.py": 1}
    found: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        n = len(re.findall(r"\bos\.(?:replace|rename)\(|\.rename\(|\.replace\(\s*(?:tmp|temp)", path.read_text()))
        if n:
            found[path.relative_to(PACKAGE).as_posix()] = n
    assert found == allowed, ("write files with facegen.io.atomic (atomic_write, atomic_write_bytes, or "
                              "replace_durably for a temporary filled elsewhere), not a rename of your own")


def test_the_io_front_names_are_there():
    import facegen.io as fio

    api = ["ALLOWED_FORMATS", "DEFAULT_MAX_PIXELS", "DIGITAL_SOURCE_TYPE", "MAX_PIXELS_ENV", "ImageSource",
           "load_image", "open_regular", "read_metadata", "resolve_max_pixels", "encode_png", "save_image"]
    assert set(api) <= set(fio.__all__) and all(hasattr(fio, name) for name in fio.__all__)
    assert not hasattr(fio, "_atomic_write")                       # the old private alias is gone: atomic_write
