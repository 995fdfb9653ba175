"""Dataset runner: a spec in, a verified, resumable dataset out, on one or many workers.

Work is split by shard of identities.  Every image's seed and perturbed embedding derive
from (run seed, identity, image index, attempt) (:mod:`facegen.dataset.variation`), and a
generator must make an item's pixels from the item alone (per-item ``torch.Generator``), so
the dataset is the same for any engine or worker count, and for any batch size up to the float
rounding of batched GPU kernels (:mod:`facegen.dataset.generate`: bit-exact on the CPU).

Start: everything is validated (the spec, the embedding files, the identity sampling) before
the folder is created; the run then holds the folder's lock file (:mod:`facegen.dataset.lock`:
a second run on it is refused) and writes ``spec.yaml`` (with the spec's fingerprint and the
sha256 of ``identities.npy``) and ``identities.npy``.  A run that fails before finishing a
shard of a folder it started removes what it wrote, so a corrected spec can use the folder.

Resume: a shard counts as done once its files are renamed into place and its manifest part
and, last, the size and sha256 of each of its files are written.  A rerun checks the finished
shards against those records and skips them, redoes (and says so) those whose files were
damaged, deletes the temporary files of unfinished ones and redoes them; a different spec in
the same folder is refused.

Engines: ``local`` (in this process, or ``workers`` spawned processes), ``accelerate``
(``accelerate launch``: process ``i`` of ``n`` takes shards ``k`` with ``k % n == i``) and
``ray`` (one actor per worker, one GPU each when the cluster has GPUs).
"""

from __future__ import annotations

import collections
import copy
import ctypes
import hashlib
import importlib
import inspect
import io
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facegen.dataset import writers as W
from facegen.dataset.filters import EmbedFn, FaceFn, FilterChain, ImageScores, QualityFn, build_filter_chain
from facegen.dataset.identities import GaussianPrior, load_embeddings, sample_identities
from facegen.dataset.lock import LOCK_FILE, FolderLock
from facegen.dataset.spec import DatasetSpec, default_batch_size, read_stored_extra, read_stored_fingerprint
from facegen.dataset.stats import IDENTITIES_FILE, SPEC_FILE, SUMMARY_FILE, Summary, dataset_stats
from facegen.dataset.variation import VariationConfig, WorkItem, embedding_sha256, make_work_item
from facegen.errors import FacegenError, InvalidArgumentError, MissingDependencyError
from facegen.paths import sha256_of

logger = logging.getLogger(__name__)

GenerateFn = Callable[[list[WorkItem]], list[np.ndarray]]
AlignFn = Callable[[np.ndarray], "np.ndarray | None"]

#: where :class:`PipelineGenerateFn` finds the generation pipeline's dataset factory
DEFAULT_GENERATOR_FACTORY = "facegen.dataset.generate:make_dataset_generate_fn"


# ---------------------------------------------------------------------- generator hook
class PipelineGenerateFn:
    """A picklable ``generate_fn`` that builds the real generation pipeline lazily, once per
    process (worker process, Ray actor, accelerate rank).

    The pipeline comes from ``factory`` ("module:function"), called as
    ``factory(preset=..., models_dir=..., device=..., accept_license=..., **options)`` and
    returning a ``generate_fn(items: list[WorkItem]) -> list[RGB uint8 arrays]`` that seeds
    each item with ``torch.Generator(device).manual_seed(item.seed)`` and conditions it on
    ``item.embedding`` (unit norm; rescale for raw-vector adapters), ``item.prompt`` and
    ``item.pose``.
    """

    def __init__(self, preset: str, models_dir: str | None = None, device: str | None = None,
                 accept_license: bool = False, factory: str = DEFAULT_GENERATOR_FACTORY, **options: Any) -> None:
        self.preset = preset
        self.models_dir = models_dir
        self.device = device
        self.accept_license = accept_license
        self.factory = factory
        self.options = options
        self._fn: GenerateFn | None = None
        self._check_options()

    def _factory(self) -> Callable[..., GenerateFn]:
        module_name, _, attr = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise FacegenError(
                f"the dataset generator factory '{self.factory}' is not available ({exc}); "
                "this facegen build cannot generate dataset images with a pipeline yet") from exc

    def _check_options(self) -> None:
        """Refuse option names the factory does not take (a typo in a spec's ``generator:``),
        before anything runs.  A factory that cannot be imported here fails when first called."""
        try:
            factory = self._factory()
        except FacegenError:
            return
        params = inspect.signature(factory).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        fixed = {"preset", "models_dir", "device", "accept_license"}
        unknown = sorted(set(self.options) - set(params))
        if unknown:
            known = [n for n in params if n not in fixed]
            raise InvalidArgumentError(f"unknown generator option(s) {', '.join(unknown)}; "
                                       f"the options are: {', '.join(known)}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fn"] = None  # each process builds its own pipeline
        return state

    def _build(self) -> GenerateFn:
        return self._factory()(preset=self.preset, models_dir=self.models_dir, device=self.device,
                               accept_license=self.accept_license, **self.options)

    def __call__(self, items: list[WorkItem]) -> list[np.ndarray]:
        if self._fn is None:
            self._fn = self._build()
        return self._fn(items)


def make_generate_fn(preset: str, models_dir: str | None = None, device: str | None = None,
                     accept_license: bool = False, **options: Any) -> PipelineGenerateFn:
    """The generator of a preset for :func:`run_dataset` (pipeline built on first use)."""
    return PipelineGenerateFn(preset, models_dir=models_dir, device=device, accept_license=accept_license,
                              **options)


# ---------------------------------------------------------------------- per-shard work
@dataclass
class ShardResult:
    shard: int
    accepted: int = 0
    generated: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    seconds: float = 0.0


@dataclass
class RunContext:
    """What a worker needs to process shards (picklable when its callables are)."""

    spec: DatasetSpec                 # resolved
    fingerprint: str
    generate_fn: GenerateFn
    embed_fn: EmbedFn | None = None
    face_fn: FaceFn | None = None
    quality_fn: QualityFn | None = None
    align_fn: AlignFn | None = None

    def __post_init__(self) -> None:
        self._identities: np.ndarray | None = None
        self._chain: FilterChain | None = None
        self._chain_built = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_identities=None, _chain=None, _chain_built=False)
        return state

    @property
    def root(self) -> Path:
        return Path(self.spec.out)

    @property
    def identities(self) -> np.ndarray:
        if self._identities is None:
            # memory-mapped: worker processes share the pages of a large identity file
            self._identities = np.load(self.root / IDENTITIES_FILE, mmap_mode="r", allow_pickle=False)
        return self._identities

    @property
    def chain(self) -> FilterChain | None:
        if not self._chain_built:
            self._chain = build_filter_chain(self.spec, embed_fn=self.embed_fn, face_fn=self.face_fn,
                                             quality_fn=self.quality_fn)
            self._chain_built = True
        return self._chain


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _generate(ctx: RunContext, items: list[WorkItem]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for batch in _batches(items, ctx.spec.batch_size):
        images = list(ctx.generate_fn(list(batch)))
        if len(images) != len(batch):
            raise FacegenError(f"generate_fn returned {len(images)} images for {len(batch)} items")
        for item, rgb in zip(batch, images):
            rgb = np.asarray(rgb)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise FacegenError(f"generate_fn must return RGB uint8 (H, W, 3) arrays; item {item.key} "
                                   f"got {rgb.dtype} {rgb.shape}")
            out.append(rgb)
    return out


def _score_many(ctx: RunContext, rgbs: Sequence[np.ndarray]) -> list[ImageScores]:
    """Filter scores of a batch of generated images (embedded in one call where possible)."""
    if ctx.chain is not None:
        return ctx.chain.score_many(rgbs)
    if ctx.embed_fn is None:
        return [ImageScores() for _ in rgbs]
    many = getattr(ctx.embed_fn, "embed_many", None)
    embs = many(list(rgbs)) if many is not None else [ctx.embed_fn(rgb) for rgb in rgbs]
    return [ImageScores(embedding=e) for e in embs]


def _finalise_identities(ctx: RunContext, identities: Sequence[int], result: ShardResult
                         ) -> dict[int, dict[int, tuple[WorkItem, np.ndarray, ImageScores]]]:
    """Generate, filter and regenerate the images of a few identities until every image
    passed or used its ``max_attempts`` tries."""
    spec = ctx.spec
    cfg = VariationConfig(spec.noise_levels, spec.noise_shares, spec.prompts, spec.poses)
    k = spec.images_per_id
    accepted: dict[int, dict[int, tuple[WorkItem, np.ndarray, ImageScores]]] = {i: {} for i in identities}
    pending = [make_work_item(spec.seed, i, j, ctx.identities[i], k, cfg, attempt=0)
               for i in identities for j in range(k)]
    while pending:
        images = _generate(ctx, pending)
        result.generated += len(pending)
        scored = list(zip(pending, images, _score_many(ctx, images)))
        retry: list[WorkItem] = []
        by_identity: dict[int, list[tuple[WorkItem, np.ndarray, ImageScores]]] = collections.defaultdict(list)
        for entry in scored:
            by_identity[entry[0].identity].append(entry)
        for ident in sorted(by_identity):
            group = by_identity[ident]
            chain = ctx.chain
            verdict: dict[int, str | None] = (
                chain.decide({j: e[2] for j, e in accepted[ident].items()}, {e[0].index: e[2] for e in group})
                if chain is not None else {e[0].index: None for e in group})
            for item, rgb, scores in group:
                reason = verdict[item.index]
                if reason is None:
                    accepted[ident][item.index] = (item, rgb, scores)
                    continue
                result.rejected[reason] = result.rejected.get(reason, 0) + 1
                if item.attempt + 1 < spec.max_attempts:
                    retry.append(make_work_item(spec.seed, ident, item.index, ctx.identities[ident], k, cfg,
                                                attempt=item.attempt + 1))
                else:
                    result.dropped += 1
                    logger.info("image %s dropped after %d attempts (last: %s)", item.key, spec.max_attempts, reason)
        pending = retry
    return accepted


def _provenance(ctx: RunContext, item: WorkItem) -> dict[str, Any]:
    return {"model": ctx.spec.model, "seed": item.seed, "identity": item.identity, "index": item.index,
            "attempt": item.attempt, "dataset": ctx.fingerprint}


def process_shard(ctx: RunContext, shard: int, on_images: Callable[[int], None] | None = None) -> ShardResult:
    """Generate, filter and write one shard; its manifest part is written last."""
    t0 = time.perf_counter()
    spec, root = ctx.spec, ctx.root
    W.clean_shard_temps(root, shard)
    W.files_path(root, shard).unlink(missing_ok=True)   # redoing a damaged shard: not done until rewritten
    result = ShardResult(shard)
    records: list[dict[str, Any]] = []
    embeddings: list[np.ndarray | None] = []
    judge: str | None = None
    ids = list(spec.shard_identities(shard))
    # identities finished together: about four generator batches of work at a time
    per_chunk = max(1, -(-4 * spec.batch_size // spec.images_per_id))
    writer = W.ShardWriter(root, shard, spec.format)
    try:
        for chunk in _batches(ids, per_chunk):
            done = _finalise_identities(ctx, chunk, result)
            for ident in chunk:
                for index in sorted(done[ident]):
                    item, rgb, scores = done[ident][index]
                    meta = _provenance(ctx, item)
                    png = W.encode_png(rgb, meta, spec.provenance)
                    crop_png = crop_ref = None
                    if spec.crops and ctx.align_fn is not None:
                        crop = ctx.align_fn(rgb)
                        if crop is not None:
                            crop_png = W.encode_png(np.ascontiguousarray(crop, dtype=np.uint8), {**meta, "crop": "arcface112"},
                                                    spec.provenance)
                            crop_ref = (W.image_relpath(ident, index, crop=True) if spec.format == "imagefolder"
                                        else f"{item.key}.crop112.png")
                    record: dict[str, Any] = {
                        "key": item.key, "identity": ident, "index": index, "attempt": item.attempt,
                        "seed": item.seed, "noise_level": item.noise_level,
                        "embedding_sha256": embedding_sha256(item.embedding),
                        "identity_sha256": embedding_sha256(ctx.identities[ident]),
                        "prompt": item.prompt, "pose": item.pose,
                        "scores": scores.to_dict() if ctx.chain is not None else None,
                        "crop": crop_ref,
                    }
                    writer.add(item.key, ident, index, png, record, crop_png)
                    records.append({**record, **writer.location(ident, index)})
                    emb = scores.embedding
                    if emb is not None:
                        judge = emb.encoder
                    embeddings.append(None if emb is None else emb.vector)
                    result.accepted += 1
                if on_images is not None:
                    on_images(len(done[ident]))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    emb_matrix = None
    dim = next((e.shape[0] for e in embeddings if e is not None), 0)
    if dim:
        emb_matrix = np.stack([e if e is not None else np.full(dim, np.nan, np.float32) for e in embeddings])
    stats = {"shard": shard, "identities": [ids[0], ids[-1] + 1] if ids else [], "accepted": result.accepted,
             "generated": result.generated, "rejected": dict(sorted(result.rejected.items())),
             "dropped": result.dropped, "embedding_encoder": judge}
    W.write_part(root, shard, records, stats, emb_matrix, fmt=spec.format)
    result.seconds = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------- preparation
def _identity_vectors(spec: DatasetSpec) -> np.ndarray:
    prior = GaussianPrior.from_npy(spec.prior) if spec.prior else None
    real = load_embeddings(spec.reject_near) if spec.reject_near else None
    assert spec.embedding_dim is not None
    return sample_identities(spec.num_ids, spec.embedding_dim, spec.seed, max_cosine=spec.max_cosine,
                             prior=prior, reject_near=real, leakage_threshold=spec.leakage_threshold)


def _is_empty(root: Path) -> bool:
    """No entries but a (stale) lock file."""
    return all(p.name == LOCK_FILE for p in root.iterdir())


def _check_folder(spec: DatasetSpec) -> DatasetSpec:
    """Resolve the spec and compare it with the one stored in the folder (read-only); the
    resolved spec's ``out`` is absolute (workers, Ray actors, may run elsewhere)."""
    root = Path(spec.out)
    spec_file = root / SPEC_FILE
    if spec_file.is_file():
        stored = DatasetSpec.from_yaml(spec_file, out=root)
        resolved = spec.resolved(stored=stored)
        if resolved.fingerprint() != read_stored_fingerprint(spec_file):
            changed = resolved.differences(stored) or ["(files or version)"]
            raise InvalidArgumentError(
                f"{root} holds a dataset made with a different spec (changed: {', '.join(changed)}); "
                "use a new output folder, or rerun with the original settings to resume")
    elif root.exists() and (not root.is_dir() or not _is_empty(root)):
        raise InvalidArgumentError(
            f"{root} exists and is not an empty folder or a facegen dataset: choose a new or empty folder")
    else:
        resolved = spec.resolved()
    resolved.out = str(Path(resolved.out).absolute())
    return resolved


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _identities_problem(spec: DatasetSpec, record: Any) -> str | None:
    """What is wrong with a started folder's ``identities.npy`` (None: it is as recorded)."""
    ids_file = Path(spec.out) / IDENTITIES_FILE
    if not ids_file.is_file():
        return f"{IDENTITIES_FILE} is missing"
    if isinstance(record, dict) and "sha256" in record:
        size = ids_file.stat().st_size
        if size != record.get("size"):
            return f"{IDENTITIES_FILE} has {size} bytes, {record.get('size')} recorded"
        if sha256_of(ids_file) != record["sha256"]:
            return f"{IDENTITIES_FILE} does not match its recorded sha256"
        return None
    try:  # a folder started before checksums were recorded: its shape
        shape = np.load(ids_file, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError, EOFError):
        return f"{IDENTITIES_FILE} is unreadable"
    expected = (spec.num_ids, spec.embedding_dim)
    return None if shape == expected else f"{IDENTITIES_FILE} has shape {shape}, expected {expected}"


def _write_start_files(spec: DatasetSpec, fingerprint: str, identities: np.ndarray | None = None) -> None:
    """``spec.yaml`` then ``identities.npy`` (``identities``: already sampled); on a resume,
    ``identities.npy`` is checked against its recorded sha256 and sampled again if damaged."""
    from facegen import __version__
    from facegen.dataset.spec import SPEC_VERSION

    root = Path(spec.out)
    root.mkdir(parents=True, exist_ok=True)
    spec_file, ids_file = root / SPEC_FILE, root / IDENTITIES_FILE
    if not spec_file.is_file():
        data = _npy_bytes(identities if identities is not None else _identity_vectors(spec))
        record = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        spec.to_yaml(spec_file, runtime=False, extra={"fingerprint": fingerprint, "spec_version": SPEC_VERSION,
                                                       "facegen_version": __version__, "identities": record})
        W.atomic_write_bytes(ids_file, data)
        return
    record = read_stored_extra(spec_file, "identities")
    problem = _identities_problem(spec, record)
    if problem is None:
        return
    logger.warning("%s: %s: sampling the identities again", root, problem)
    data = _npy_bytes(_identity_vectors(spec))
    if isinstance(record, dict) and record.get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
        raise FacegenError(f"{ids_file} was damaged and sampling again gave other identities (another numpy "
                           "version?): this dataset cannot be resumed here; generate it in a new folder")
    W.atomic_write_bytes(ids_file, data)


def _start(spec: DatasetSpec, resolved: DatasetSpec, fingerprint: str) -> tuple[FolderLock, DatasetSpec, bool, bool]:
    """Sample a new folder's identities (the last check that can fail on the spec), then create
    the folder, lock it and write the start files.  Returns (lock, resolved spec, whether this
    run starts the folder, whether it created it); on an error nothing it made is left."""
    root = Path(resolved.out)
    fresh = not (root / SPEC_FILE).is_file()
    identities = _identity_vectors(resolved) if fresh else None
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacegenError(f"cannot create the dataset folder {root}: {exc.strerror or exc}") from exc
    lock = FolderLock(root)
    try:
        lock.acquire()
    except BaseException:
        if created:
            _rmdir_quietly(root)
        raise
    try:
        if fresh and (root / SPEC_FILE).is_file():  # another run started the folder meanwhile
            fresh, identities = False, None                 # (so nothing of it is removed on an error)
            resolved = _check_folder(spec)
        elif fresh and not _is_empty(root):
            raise InvalidArgumentError(f"{root} is not empty any more (another program writes to it?): "
                                       "choose a new or empty folder")
        _write_start_files(resolved, fingerprint, identities)
    except BaseException:
        if fresh:
            _remove_started(root, lock, created)
        lock.release()
        raise
    return lock, resolved, fresh, created


def _rmdir_quietly(root: Path) -> None:
    try:
        root.rmdir()
    except OSError:
        pass


def _remove_started(root: Path, lock: FolderLock, created: bool) -> None:
    """Remove what a failed start wrote into a folder that was empty (under its lock)."""
    for child in root.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    lock.release()
    if created:
        _rmdir_quietly(root)
    logger.info("%s: the run failed before finishing a shard: removed what it had written", root)


# ---------------------------------------------------------------------- engines
def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="dataset", disable=not enabled, smoothing=0.1)


def _merge(results: list[ShardResult]) -> ShardResult:
    total = ShardResult(-1)
    for r in results:
        total.accepted += r.accepted
        total.generated += r.generated
        total.dropped += r.dropped
        for k, v in r.rejected.items():
            total.rejected[k] = total.rejected.get(k, 0) + v
    return total


def _run_local(ctx: RunContext, shards: list[int], workers: int, bar) -> list[ShardResult]:
    if workers <= 1 or len(shards) <= 1:
        return [process_shard(ctx, k, on_images=bar.update) for k in shards]
    import multiprocessing

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


def _on_device(fn: PipelineGenerateFn, device: str) -> PipelineGenerateFn:
    clone = copy.copy(fn)
    clone.device = device
    clone._fn = None
    return clone


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
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
        if isinstance(ctx.generate_fn, PipelineGenerateFn) and ctx.generate_fn.device is None \
                and torch.cuda.is_available():
            ctx.generate_fn = _on_device(ctx.generate_fn, f"cuda:{index % torch.cuda.device_count()}")
    _WORKER_CTX = ctx


def _worker_process_shard(shard: int) -> ShardResult:
    assert _WORKER_CTX is not None, "worker not initialised"
    return process_shard(_WORKER_CTX, shard)


class _ShardActor:
    """Ray actor body: holds one context (and so one pipeline) and processes shards."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def run(self, shard: int) -> ShardResult:
        return process_shard(self.ctx, shard)


def _run_ray(ctx: RunContext, shards: list[int], workers: int, bar) -> list[ShardResult]:
    try:
        import ray
        from ray.util import ActorPool
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


def _generates_on_gpu(generate_fn: Any) -> bool:
    """Whether a preset generator will run on CUDA (its device, else CUDA when available)."""
    if not isinstance(generate_fn, PipelineGenerateFn):
        return False
    if generate_fn.device is not None:
        return str(generate_fn.device).startswith("cuda")
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------- entry point
def run_dataset(spec: DatasetSpec, generate_fn: GenerateFn, engine: str | None = None, workers: int | None = None,
                progress: bool = True, embed_fn: EmbedFn | None = None, face_fn: FaceFn | None = None,
                quality_fn: QualityFn | None = None, align_fn: AlignFn | None = None,
                batch_size: int | None = None) -> Summary:
    """Generate (or finish) the dataset ``spec`` describes; return its summary.

    ``generate_fn(items) -> [RGB uint8]`` makes the images (:func:`make_generate_fn` for a
    preset); ``embed_fn(rgb) -> IDEmbedding | None`` overrides the independent encoder of the
    ID filter and, given with filters off, still measures the summary's similarities;
    ``align_fn(rgb) -> 112x112 crop | None`` makes the crops when ``spec.crops``
    (default :class:`~facegen.dataset.writers.ArcFaceCropFn`).  ``engine``, ``workers`` and
    ``batch_size`` override the spec's; they never change the output beyond the float rounding
    of a batched GPU generator (see :mod:`facegen.dataset.generate`).
    """
    overrides = {k: v for k, v in (("engine", engine), ("workers", workers), ("batch_size", batch_size))
                 if v is not None}
    spec = replace(spec, **overrides).validate()
    if spec.batch_size is None:
        spec = replace(spec, batch_size=default_batch_size(spec.model, _generates_on_gpu(generate_fn)))
    t0 = time.perf_counter()
    state = None
    if spec.engine == "accelerate":
        try:
            from accelerate import PartialState
        except ImportError:
            raise MissingDependencyError("accelerate", None, "the accelerate engine") from None
        import torch

        # cpu=True lets torchrun/mpirun ranks without CUDA form a gloo group (MULTI_CPU)
        state = PartialState(cpu=not torch.cuda.is_available())
        if isinstance(generate_fn, PipelineGenerateFn) and generate_fn.device is None:
            generate_fn = _on_device(generate_fn, str(state.device))
    is_main = state is None or state.is_main_process

    signer = None
    if spec.provenance.get("c2pa"):
        from facegen.provenance.credentials import load_identity

        signer = load_identity()  # a bad $FACEGEN_C2PA_CERT fails before anything is generated
    resolved = _check_folder(spec)  # every rank checks (and fails alike) before anything is written
    fingerprint = resolved.fingerprint()
    if resolved.is_tiny() and not resolved.filters and spec.filters is None and is_main:
        logger.warning("model '%s' is a tiny preset that cannot draw faces: the face, ID-consistency and "
                       "duplicate filters are off (set filters: true / dedup: true to force them)", resolved.model)
    if state is not None:
        state.wait_for_everyone()
    start_error: BaseException | None = None
    lock: FolderLock | None = None
    fresh = created = False
    if is_main:
        try:
            lock, resolved, fresh, created = _start(spec, resolved, fingerprint)
        except BaseException as exc:
            if state is None:
                raise
            start_error = exc  # the other ranks must still reach the barrier
    try:
        return _run_started(resolved, fingerprint, generate_fn, state, start_error, progress, t0,
                            embed_fn=embed_fn, face_fn=face_fn, quality_fn=quality_fn, align_fn=align_fn,
                            signer=signer)
    except Exception:
        root = Path(resolved.out)
        if lock is not None and fresh and state is None and lock.held and \
                not any(W.files_path(root, k).is_file() for k in range(resolved.num_shards)):
            _remove_started(root, lock, created)  # nothing finished: leave the folder as it was
        raise
    finally:
        if lock is not None:
            lock.release()


def _run_started(resolved: DatasetSpec, fingerprint: str, generate_fn: GenerateFn, state: Any,
                 start_error: BaseException | None, progress: bool, t0: float, embed_fn: EmbedFn | None,
                 face_fn: FaceFn | None, quality_fn: QualityFn | None, align_fn: AlignFn | None,
                 signer: Any = None) -> Summary:
    """The shards of a started (locked) folder, then its manifest, summary, card and seal
    (``signer``: the C2PA identity, None without ``provenance: {c2pa: true}``)."""
    is_main = state is None or state.is_main_process
    if state is not None:
        state.wait_for_everyone()
        if start_error is not None:
            raise start_error
        if not (Path(resolved.out) / IDENTITIES_FILE).is_file():
            raise FacegenError("the main process could not prepare the dataset folder (see its error)")
    if resolved.crops and align_fn is None:
        align_fn = W.ArcFaceCropFn()
    ctx = RunContext(resolved, fingerprint, generate_fn, embed_fn=embed_fn, face_fn=face_fn,
                     quality_fn=quality_fn, align_fn=align_fn)

    root = Path(resolved.out)
    all_shards = list(range(resolved.num_shards))
    if state is not None:
        all_shards = [k for k in all_shards if k % state.num_processes == state.process_index]
    done: list[int] = []
    redone = 0
    for k in all_shards:  # finished shards are checked against their recorded sizes and sha256
        problem = W.shard_problem(root, k, resolved.format)
        if problem is None:
            done.append(k)
        elif problem != W.UNFINISHED:
            redone += 1
            logger.warning("%s: shard %d is damaged (%s): redoing it", root, k, problem)
    todo = [k for k in all_shards if k not in done]
    per_image_done = sum(len(resolved.shard_identities(k)) for k in done) * resolved.images_per_id
    total = sum(len(resolved.shard_identities(k)) for k in all_shards) * resolved.images_per_id
    logger.info("dataset %s: %d identities x %d images, %d shards (%d done already), fingerprint %s, engine %s, "
                "batch size %d", root, resolved.num_ids, resolved.images_per_id, len(all_shards), len(done),
                fingerprint, resolved.engine, resolved.batch_size)
    error: BaseException | None = None
    results: list[ShardResult] = []
    t_gen = time.perf_counter()
    with _progress_bar(total, per_image_done, progress and is_main) as bar:
        try:
            if resolved.engine == "ray":
                results = _run_ray(ctx, todo, resolved.workers, bar)
            elif resolved.engine == "local":
                results = _run_local(ctx, todo, resolved.workers, bar)
            else:
                results = [process_shard(ctx, k, on_images=bar.update) for k in todo]
        except BaseException as exc:
            if state is None:
                raise
            error = exc
    gen_seconds = time.perf_counter() - t_gen
    if state is not None:
        state.wait_for_everyone()
        if error is not None:
            raise error

    summary = dataset_stats(root)
    if not summary.complete:
        raise FacegenError(f"{summary.shards - summary.shards_done} of {summary.shards} shards of {root} are "
                           "unfinished: rerun the same command to resume")
    this_run = _merge(results)
    summary.shards_skipped = len(done)
    summary.shards_redone = redone
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.images_per_second = round(this_run.accepted / gen_seconds, 3) if this_run.accepted and gen_seconds > 0 else None
    if is_main:
        n_lines = W.write_manifest(root, resolved.num_shards)
        if n_lines != summary.accepted:
            raise FacegenError(f"manifest of {root} has {n_lines} lines for {summary.accepted} samples")
        W.atomic_write_bytes(root / SUMMARY_FILE, W.json_bytes(summary.to_dict()) + b"\n")
        from facegen.dataset.card import write_dataset_card

        write_dataset_card(root, resolved, summary)  # README.md, the Hugging Face dataset card
        if signer is not None:
            from facegen.provenance.seal import seal_dataset

            seal_dataset(root, fingerprint=fingerprint, identity=signer)
        tmp = root / W.TMP_DIR
        if tmp.is_dir() and not any(tmp.iterdir()):
            tmp.rmdir()
        logger.info("%s", summary.format_text())
    return summary
