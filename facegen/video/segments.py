"""Resumable output: the clip is written as numbered segments in ``<out>.facegen-parts/``, each
one atomically (written under a temporary name, fsynced, renamed into place), followed by the
pipeline's state at its end (tracks, filters, the previous frame's result, the measurements).

A segment counts as finished when both its video file and its state file exist; after a crash
(even ``kill -9``) the same command finds the folder, checks that it belongs to the same run
(the run's fingerprint: input, settings, seed), and continues after the last finished segment.
When every segment is done they are concatenated into ``<out>`` (see
:func:`facegen.video.container.assemble`) and the folder is removed. The final file is never
written in place: it appears complete, by a rename, or not at all.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import FacegenError
from facegen.io.atomic import TEMP_INFIX, atomic_write_bytes, replace_durably

logger = logging.getLogger(__name__)

PARTS_SUFFIX = ".facegen-parts"
RUN_FILE = "run.json"


class SegmentStore:
    """The parts folder of one output file."""

    def __init__(self, out: Path, fingerprint: str) -> None:
        self.out = Path(out)
        self.dir = self.out.with_name(self.out.name + PARTS_SUFFIX)
        self.fingerprint = fingerprint

    def segment(self, k: int) -> Path:
        return self.dir / f"seg-{k:05d}.mp4"

    def state_file(self, k: int) -> Path:
        return self.dir / f"seg-{k:05d}.state.npz"

    def tmp(self, name: str) -> Path:
        """A stable temporary name inside the parts folder (the writer and the commit share it;
        the run owns the folder and clears it), in the atomic writer's naming."""
        return self.dir / f".{name}{TEMP_INFIX}{os.getpid()}"

    def open(self, run: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Start or resume: (finished segments, the run record). A folder from another run
        (other input, settings or seed) is cleared and the run starts over."""
        record_path = self.dir / RUN_FILE
        if self.dir.is_dir():
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = {}
            same = record.get("fingerprint") == self.fingerprint and (
                run.get("seed") is None or record.get("seed") == run.get("seed"))
            if same:
                done = 0
                while self.segment(done).is_file() and self.state_file(done).is_file():
                    done += 1
                for p in self.dir.iterdir():         # half-written temporaries and unfinished segments
                    if p.name.startswith(".") or (p.name.startswith("seg-") and int(p.name[4:9]) >= done):
                        p.unlink(missing_ok=True)
                if done:
                    logger.info("resuming %s after %d finished segment(s)", self.out, done)
                return done, record
            logger.info("%s holds parts of another run (different input or settings): starting over", self.dir)
            shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FacegenError(f"cannot create {self.dir}: {exc.strerror or exc}") from exc
        record = {**run, "fingerprint": self.fingerprint}
        atomic_write_bytes(record_path, json.dumps(record, sort_keys=True, indent=1).encode())
        return 0, record

    def segment_tmp(self, k: int) -> Path:
        return self.tmp(self.segment(k).name)

    def commit(self, k: int, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Rename segment ``k`` (encoded at :meth:`segment_tmp`) into place, then write its
        state; both atomic, the state last (it marks the segment finished)."""
        replace_durably(self.segment_tmp(k), self.segment(k))
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.frombuffer(json.dumps(meta, sort_keys=True, default=_json).encode(), np.uint8),
                 **arrays)
        atomic_write_bytes(self.state_file(k), buf.getvalue())

    def load_state(self, k: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with np.load(self.state_file(k), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        return meta, arrays

    def segments(self, n: int) -> list[Path]:
        return [self.segment(k) for k in range(n)]

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
