"""Shared helpers of the hostile-input tests (issue 29 and the rounds after it).

Each test file holds one class of attack (lock files, sidecars and arrays, seals, JSON shape,
the app's doors ...); each test names the repro it started from. Extend the class's file with
new variations rather than adding a file per repro.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest


def within_seconds(fn, seconds: float = 20.0):
    """fn() in a thread; fail (instead of hanging the suite) if it does not return in time.
    The result or the exception is handed back."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"still running after {seconds} s (blocked on a FIFO or a huge read?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture()
def fifo(tmp_path, request) -> Path:
    """A named pipe nobody writes to (opening it for reading blocks forever)."""
    return make_fifo(tmp_path / "pipe", request)


def release_fifo(path: Path) -> None:
    """Open and close a FIFO's write end, so a reader stuck on it (a failing test) is released."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def make_fifo(path: Path, request) -> Path:
    """A FIFO at ``path``, released after the test."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(path)
    request.addfinalizer(lambda: release_fifo(path))
    return path
