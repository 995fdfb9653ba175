"""How the shards of a run are spread: the engines :func:`facegen.dataset.runner.run_dataset` reads
from :data:`ENGINES`.

* ``local``: in this process, or ``workers`` spawned processes (each dies with the run);
* ``accelerate``: every process of ``accelerate launch`` (or ``torchrun``) runs the same
  ``run_dataset``; process ``i`` of ``n`` takes the shards ``k`` with ``k % n == i``;
* ``ray``: one actor per worker, one GPU each when the cluster has GPUs.

An engine never changes an item's pixels (:mod:`facegen.dataset.shard`).  A new engine is a
subclass of :class:`Engine` and its line in :data:`ENGINES`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, ClassVar

from facegen.dataset.generator import PipelineGenerateFn
from facegen.dataset.shard import GenerateFn, RunContext, ShardResult, process_shard
from facegen.errors import MissingDependencyError


class Engine:
    """One run's way of spreading shards.  ``collective`` engines run in several processes at
    once (each one a rank calling ``run_dataset``); they meet at :meth:`wait_for_everyone`, and a
    rank's error waits for the others there before it is raised."""

    collective: ClassVar[bool] = False

    @property
    def is_main(self) -> bool:
        """Whether this process starts the folder and writes the manifest, summary and card."""
        return True

    def prepare(self, generate_fn: GenerateFn) -> GenerateFn:
        """The generator this process uses (a rank puts a preset's pipeline on its own device)."""
        return generate_fn

    def wait_for_everyone(self) -> None:
        """Barrier of a collective engine's processes (nothing to wait for otherwise)."""

    def mine(self, shards: list[int]) -> list[int]:
        """The shards this process is responsible for."""
        return shards

    def run(self, ctx: RunContext, shards: list[int], workers: int, bar: Any) -> list[ShardResult]:
        """Make ``shards``; ``bar.update(n)`` as images are accepted."""
        raise NotImplementedError


class LocalEngine(Engine):
    """This process, or a pool of ``workers`` spawned processes."""

    def run(self, ctx: RunContext, shards: list[int], workers: int, bar: Any) -> list[ShardResult]:
        if workers <= 1 or len(shards) <= 1:
            return [process_shard(ctx, k, on_images=bar.update) for k in shards]
        import multiprocessing  # noqa: PLC0415

        results: list[ShardResult] = []
        n = min(workers, len(shards))
        mp = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n, mp_context=mp, initializer=_init_worker,
                                 initargs=(ctx, n, mp.Value("i", 0), os.getpid())) as pool:
            futures = [pool.submit(_worker_process_shard, k) for k in shards]
            for fut in as_completed(futures):
                res = fut.result()
                bar.update(res.accepted)
                results.append(res)
        return results


_WORKER_CTX: RunContext | None = None  # set in spawned worker processes only


def _die_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Make this worker process end when the run's process does (``kill -9`` included):
    ``PR_SET_PDEATHSIG`` on Linux, and everywhere a thread that watches the parent pid."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog remains
            pass
    if os.name != "posix":  # pragma: no cover - no reparenting to watch for
        return
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="facegen-parent-watch", daemon=True).start()


def _init_worker(ctx: RunContext, n_workers: int, counter: Any, parent_pid: int | None = None) -> None:
    """Runs once in each spawned worker: dies with its parent, keeps the context, shares out
    CPU threads and GPUs."""
    global _WORKER_CTX
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if "torch" in sys.modules or isinstance(ctx.generate_fn, PipelineGenerateFn):
        import torch  # noqa: PLC0415

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
        if isinstance(ctx.generate_fn, PipelineGenerateFn) and ctx.generate_fn.device is None \
                and torch.cuda.is_available():
            ctx.generate_fn = ctx.generate_fn.on_device(f"cuda:{index % torch.cuda.device_count()}")
    _WORKER_CTX = ctx


def _worker_process_shard(shard: int) -> ShardResult:
    assert _WORKER_CTX is not None, "worker not initialised"
    return process_shard(_WORKER_CTX, shard)


class AccelerateEngine(Engine):
    """One rank of ``accelerate launch``: the shards ``k % n == i``, one after the other."""

    collective = True

    def __init__(self) -> None:
        try:
            from accelerate import PartialState  # noqa: PLC0415
        except ImportError:
            raise MissingDependencyError("accelerate", None, "the accelerate engine") from None
        import torch  # noqa: PLC0415

        # cpu=True lets torchrun/mpirun ranks without CUDA form a gloo group (MULTI_CPU)
        self.state = PartialState(cpu=not torch.cuda.is_available())

    @property
    def is_main(self) -> bool:
        return bool(self.state.is_main_process)

    def prepare(self, generate_fn: GenerateFn) -> GenerateFn:
        if isinstance(generate_fn, PipelineGenerateFn) and generate_fn.device is None:
            return generate_fn.on_device(str(self.state.device))
        return generate_fn

    def wait_for_everyone(self) -> None:
        self.state.wait_for_everyone()

    def mine(self, shards: list[int]) -> list[int]:
        return [k for k in shards if k % self.state.num_processes == self.state.process_index]

    def run(self, ctx: RunContext, shards: list[int], workers: int, bar: Any) -> list[ShardResult]:
        return [process_shard(ctx, k, on_images=bar.update) for k in shards]


class _ShardActor:
    """Ray actor body: holds one context (and so one pipeline) and processes shards."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def run(self, shard: int) -> ShardResult:
        return process_shard(self.ctx, shard)


class RayEngine(Engine):
    """One Ray actor per worker (one GPU each when the cluster has GPUs), on the cluster of
    ``$RAY_ADDRESS`` or a local one of ``workers`` CPUs."""

    def run(self, ctx: RunContext, shards: list[int], workers: int, bar: Any) -> list[ShardResult]:
        try:
            import ray  # noqa: PLC0415
            from ray.util import ActorPool  # noqa: PLC0415
        except ImportError:
            raise MissingDependencyError("ray", "dist", "the ray engine") from None
        started = False
        if not ray.is_initialized():
            if os.environ.get("RAY_ADDRESS"):  # join the running cluster (its resources, not ours)
                ray.init(log_to_driver=False, configure_logging=False)
            else:  # a local cluster of `workers` CPUs (plus this machine's GPUs)
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            started = True
        try:
            gpus = float(ray.cluster_resources().get("GPU", 0))
            options = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}
            actor_cls = ray.remote(**options)(_ShardActor)
            actors = [actor_cls.remote(ctx) for _ in range(max(1, min(workers, len(shards))))]
            results: list[ShardResult] = []
            for res in ActorPool(actors).map_unordered(lambda a, k: a.run.remote(k), shards):
                bar.update(res.accepted)
                results.append(res)
            return results
        finally:
            if started:
                ray.shutdown()


#: engine name (a spec's ``engine:``, ``--engine``) -> its class; the names are
#: :data:`facegen.dataset.spec.ENGINES`
ENGINES: dict[str, type[Engine]] = {"local": LocalEngine, "accelerate": AccelerateEngine, "ray": RayEngine}
