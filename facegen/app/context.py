"""What every tab shares: settings, the app-owned temporary folder and the pipeline cache.

One :class:`AppContext` per app, built once; handlers read it but never mutate settings, so
concurrent sessions cannot see each other's choices (per-session values live in
``gr.State``).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from facegen.app.cache import PipelineCache
from facegen.paths import DEFAULT_ACCESS, ModelAccess

logger = logging.getLogger(__name__)

#: environment variable Gradio reads for its upload/result cache folder
GRADIO_TEMP_ENV = "GRADIO_TEMP_DIR"


def prepare_work_dir(work_dir: Path | None = None) -> Path:
    """Create the app's own temporary folder and point Gradio's cache at ``<it>/gradio``.

    Uploads, results (``<it>/gradio/outputs``) and Gradio's copies all live under it, and
    nothing else is served. A folder created here (the default: a fresh private one under
    the system temp folder) gets mode 0700 and is removed when the process exits; a given
    folder that already exists is used as it is.
    """
    if work_dir is None:
        path = Path(tempfile.mkdtemp(prefix="facegen-app-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    else:
        path = Path(work_dir).expanduser().resolve()
        if not path.exists():
            path.mkdir(parents=True, mode=0o700)
    cache = path / "gradio"
    (cache / "outputs").mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o700)
    os.environ[GRADIO_TEMP_ENV] = str(cache)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(cache / "examples")
    return path


def prune_outputs(root: Path, max_age_s: float) -> int:
    """Delete result folders older than ``max_age_s`` (the app keeps results for a while,
    not forever); returns how many were removed."""
    now = time.time()
    removed = 0
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def sweep_work_dir(root: Path, max_age_s: float) -> int:
    """Delete uploads and results under ``<root>/gradio`` older than ``max_age_s`` (by
    modification time), and the folders they leave empty; returns how many files went.
    The folder layout Gradio and the app rely on (``gradio``, ``gradio/outputs``) is kept."""
    cache = Path(root) / "gradio"
    keep = {cache, cache / "outputs"}
    cutoff = time.time() - max_age_s
    removed = 0
    for dirpath, dirnames, filenames in os.walk(cache, topdown=False):
        folder = Path(dirpath)
        for name in filenames:
            path = folder / name
            try:
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        if folder not in keep:
            try:
                folder.rmdir()            # only when empty
            except OSError:
                pass
    if removed:
        logger.info("removed %d upload/result file(s) older than %.0f s", removed, max_age_s)
    return removed


def remove_user_files(root: Path) -> None:
    """Delete every upload and result (``<root>/gradio``): at shutdown, nothing users sent stays."""
    shutil.rmtree(Path(root) / "gradio", ignore_errors=True)


class Janitor:
    """A daemon thread that sweeps the work folder every ``interval_s`` (see :func:`sweep_work_dir`)."""

    def __init__(self, root: Path, retention_s: float, interval_s: float | None = None) -> None:
        self.root, self.retention_s = Path(root), float(retention_s)
        self.interval_s = interval_s if interval_s is not None else max(1.0, min(60.0, self.retention_s / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facegen-janitor", daemon=True)

    def start(self) -> "Janitor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sweep_work_dir(self.root, self.retention_s)
            except Exception as exc:  # noqa: BLE001 - keep sweeping
                logger.warning("cleaning %s failed: %s", self.root, exc)


@dataclass
class AppContext:
    """Settings of one running app plus its shared, thread-safe resources.

    model: the preset selected when a page opens.
    work_dir: the app-owned temporary folder (see :func:`prepare_work_dir`).
    gpu_lock: held while a model runs, so one job uses the accelerator at a time even if
        the Gradio queue is configured otherwise.
    """

    model: str
    work_dir: Path
    access: ModelAccess = DEFAULT_ACCESS     # models folder, licence acceptance, device
    max_images: int = 8
    keep_results_s: float = 3600.0        # retention of uploads and results (``facegen serve --retention``)
    pipelines: PipelineCache = field(default_factory=PipelineCache)
    gpu_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def outputs_dir(self) -> Path:
        return self.work_dir / "gradio" / "outputs"

    def new_output_dir(self, job: str) -> Path:
        """A fresh folder for one request's results, inside Gradio's (app-owned) cache so
        the files are served as they are; folders older than ``keep_results_s`` go."""
        prune_outputs(self.outputs_dir, self.keep_results_s)
        path = self.outputs_dir / f"{job}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        return path
