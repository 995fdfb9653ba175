"""Item 1 of issue 29: a planted ``.lock`` (a link, a FIFO) must never make a run write through it
or hang on it; the same for the C2PA folder's lock."""

from __future__ import annotations

import os

import pytest
from conftest import assert_one_line_error, cli

from facegen.dataset.lock import FolderLock
from facegen.errors import FacegenError

from .conftest import within_seconds


@pytest.mark.parametrize("target_exists", [True, False])
def test_planted_lock_link_is_refused_and_its_target_untouched(tmp_path, target_exists):
    victim = tmp_path / "victim.txt"
    if target_exists:
        victim.write_text("precious\n")
    folder = tmp_path / "lk"
    folder.mkdir()
    (folder / ".lock").symlink_to(victim)
    with pytest.raises(FacegenError, match="symbolic link"):
        FolderLock(folder).acquire()
    if target_exists:
        assert victim.read_text() == "precious\n"
    else:
        assert not victim.exists()          # a dangling link must not create its target either


def test_dataset_cli_with_a_planted_lock_link_is_one_line(capfd, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder = tmp_path / "lk"
    folder.mkdir()
    (folder / ".lock").symlink_to(victim)
    rc, _, err = cli(capfd, "dataset", "--model", "tiny", "--num-ids", "2", "--images-per-id", "1",
                     "--out", folder)
    assert_one_line_error(rc, err, ".lock")
    assert victim.read_text() == "precious\n"


def test_fifo_lock_is_refused_not_waited_on(tmp_path):
    folder = tmp_path / "lk"
    folder.mkdir()
    os.mkfifo(folder / ".lock")
    with pytest.raises(FacegenError, match="not a regular file"):
        within_seconds(lambda: FolderLock(folder).acquire())


def test_c2pa_folder_lock_link_is_refused(tmp_path):
    from facegen.provenance.credentials import default_identity

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    home = tmp_path / "home"
    (home / "c2pa").mkdir(parents=True)
    (home / "c2pa" / ".lock").symlink_to(victim)
    with pytest.raises(FacegenError, match="symbolic link"):
        default_identity(home)
    assert victim.read_text() == "precious\n"
