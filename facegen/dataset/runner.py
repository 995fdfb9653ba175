"""Dataset runner: a spec in, a verified, resumable dataset out, on one or many workers.

Work is split by shard of identities (:mod:`facegen.dataset.shard`: the work on one shard),
and a generator makes an item's pixels from the item alone, so the dataset is the same for
any engine or worker count, and for any batch size up to the float rounding of batched GPU
kernels (:mod:`facegen.dataset.generate`: bit-exact on the CPU).

Start (:mod:`facegen.dataset.start`): everything is validated before the folder is created;
the run then holds the folder's lock and writes ``spec.yaml`` and ``identities.npy``.  A run
that fails before finishing a shard of a folder it started removes what it wrote, so a
corrected spec can use the folder; with the ``accelerate`` engine the main process does so
once every rank has stopped.

Resume: a shard counts as done once its files are renamed into place and its manifest part
and, last, the size and sha256 of each of its files are written.  A rerun checks the finished
shards against those records and skips them, redoes (and says so) those whose files were
damaged, deletes the temporary files of unfinished ones and redoes them; a different spec in
the same folder is refused.

Engines (:mod:`facegen.dataset.engines`): ``local`` (in this process, or ``workers`` spawned
processes), ``accelerate`` (``accelerate launch``: process ``i`` of ``n`` takes shards ``k``
with ``k % n == i``) and ``ray`` (one actor per worker, one GPU each when the cluster has GPUs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from facegen.dataset import writers as W
from facegen.dataset.card import write_dataset_card
from facegen.dataset.engines import ENGINES, Engine
from facegen.dataset.filters import EmbedFn, FaceFn, QualityFn
from facegen.dataset.generator import generates_on_gpu
from facegen.dataset.lock import RunLock
from facegen.dataset.shard import AlignFn, GenerateFn, RunContext, ShardResult
from facegen.dataset.spec import DatasetSpec, default_batch_size
from facegen.dataset.start import check_folder, current_numerics, refuse_system_folder, remove_started, start_folder
from facegen.dataset.stats import IDENTITIES_FILE, SUMMARY_FILE, Summary, dataset_stats
from facegen.errors import FacegenError
from facegen.io.location import LocalLocation, open_location

logger = logging.getLogger(__name__)


def run_dataset(spec: DatasetSpec, generate_fn: GenerateFn, engine: str | None = None, workers: int | None = None,
                progress: bool = True, embed_fn: EmbedFn | None = None, face_fn: FaceFn | None = None,
                quality_fn: QualityFn | None = None, align_fn: AlignFn | None = None,
                batch_size: int | None = None) -> Summary:
    """Generate (or finish) the dataset ``spec`` describes; return its summary.

    ``generate_fn(items) -> [RGB uint8]`` makes the images (:func:`~facegen.dataset.generator.make_generate_fn` for a
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
        spec = replace(spec, batch_size=default_batch_size(spec.model, generates_on_gpu(generate_fn)))
    t0 = time.perf_counter()
    check_location(spec.out)
    spread = ENGINES[spec.engine]()
    generate_fn = spread.prepare(generate_fn)

    signer = None
    if spec.provenance.get("c2pa"):
        from facegen.provenance.credentials import load_identity

        signer = load_identity()  # a bad $FACEGEN_C2PA_CERT fails before anything is generated
    numerics = current_numerics(spec, generates_on_gpu(generate_fn))
    resolved = check_folder(spec, numerics)  # every rank checks (and fails alike) before anything is written
    fingerprint = resolved.fingerprint()
    if resolved.is_tiny() and not resolved.filters and spec.filters is None and spread.is_main:
        logger.warning("model '%s' is a tiny preset that cannot draw faces: the face, ID-consistency and "
                       "duplicate filters are off (set filters: true / dedup: true to force them)", resolved.model)
    spread.wait_for_everyone()
    start_error: BaseException | None = None
    lock: RunLock | None = None
    fresh = created = False
    if spread.is_main:
        try:
            lock, resolved, fresh, created = start_folder(spec, resolved, fingerprint, numerics)
        except BaseException as exc:
            if not spread.collective:
                raise
            start_error = exc  # the other ranks must still reach the barrier
    try:
        return _run_started(resolved, fingerprint, generate_fn, spread, start_error, progress, t0,
                            embed_fn=embed_fn, face_fn=face_fn, quality_fn=quality_fn, align_fn=align_fn,
                            signer=signer)
    except Exception:
        # past the start, a collective engine raises only once every rank has stopped writing
        if lock is not None and fresh and lock.held and not _any_finished(resolved):
            remove_started(resolved.out, lock, created)  # nothing finished: leave the folder as it was
        raise
    finally:
        if lock is not None:
            lock.release()


def check_location(out: str) -> None:
    """Refuse an unusable output location before any work: a malformed URL, a missing fsspec
    package, and on a store a missing bucket or refused access (one write probe, removed again)."""
    where = open_location(out)
    refuse_system_folder(where)
    if not where.is_local:
        where.prepare()


def _run_started(resolved: DatasetSpec, fingerprint: str, generate_fn: GenerateFn, spread: Engine,
                 start_error: BaseException | None, progress: bool, t0: float, embed_fn: EmbedFn | None,
                 face_fn: FaceFn | None, quality_fn: QualityFn | None, align_fn: AlignFn | None,
                 signer: Any = None) -> Summary:
    """The shards of a started (locked) folder, then its manifest, summary, card and seal
    (``signer``: the C2PA identity, None without ``provenance: {c2pa: true}``)."""
    root = open_location(resolved.out)
    if spread.collective:
        spread.wait_for_everyone()
        if start_error is not None:
            raise start_error
        if not root.exists(IDENTITIES_FILE):
            raise FacegenError("the main process could not prepare the dataset folder (see its error)")
    error: BaseException | None = None
    results: list[ShardResult] = []
    done: list[int] = []
    redone, gen_seconds = 0, 0.0
    try:  # on a collective engine, an error waits for the other ranks (they may still be writing)
        if resolved.crops and align_fn is None:
            align_fn = W.ArcFaceCropFn()
        ctx = RunContext(resolved, fingerprint, generate_fn, embed_fn=embed_fn, face_fn=face_fn,
                         quality_fn=quality_fn, align_fn=align_fn)
        all_shards = spread.mine(list(range(resolved.num_shards)))
        done, redone = _finished_shards(resolved, all_shards)
        todo = [k for k in all_shards if k not in done]
        per_image_done = sum(len(resolved.shard_identities(k)) for k in done) * resolved.images_per_id
        total = sum(len(resolved.shard_identities(k)) for k in all_shards) * resolved.images_per_id
        logger.info("dataset %s: %d identities x %d images, %d shards (%d done already), fingerprint %s, "
                    "engine %s, batch size %d", root, resolved.num_ids, resolved.images_per_id, len(all_shards),
                    len(done), fingerprint, resolved.engine, resolved.batch_size)
        t_gen = time.perf_counter()
        with _progress_bar(total, per_image_done, progress and spread.is_main) as bar:
            results = spread.run(ctx, todo, resolved.workers, bar)
        gen_seconds = time.perf_counter() - t_gen
    except BaseException as exc:
        if not spread.collective:
            raise
        error = exc
    if spread.collective:
        spread.wait_for_everyone()
        if error is not None:
            raise error
        if not _any_finished(resolved):  # another rank failed first; the main one clears the folder
            raise FacegenError(f"no shard of {root} was finished: another process of the run failed (see its "
                               "error)")
    return _finish(resolved, fingerprint, results, len(done), redone, gen_seconds, t0, spread.is_main, signer)


def _finished_shards(resolved: DatasetSpec, shards: list[int]) -> tuple[list[int], int]:
    """The finished shards of ``shards`` (checked against their recorded sizes and sha256), and
    how many finished ones were damaged and will be redone.

    The sizes come from one listing of the location.  On a store, a file is a whole object that
    was uploaded complete (it cannot be truncated in place), so the sizes are checked and the sha256
    only when ``dataset-stats --verify`` downloads everything; on a folder every sha256 is checked."""
    root = open_location(resolved.out)
    done: list[int] = []
    redone = 0
    for k, problem in W.shard_problems(root, shards, resolved.format, checksums=root.is_local).items():
        if problem is None:
            done.append(k)
        elif problem != W.UNFINISHED:
            redone += 1
            logger.warning("%s: shard %d is damaged (%s): redoing it", root, k, problem)
    return done, redone


def _any_finished(resolved: DatasetSpec) -> bool:
    listing = open_location(resolved.out).listing(W.PARTS_DIR)
    return any(W.files_name(k) in listing for k in range(resolved.num_shards))


def _finish(resolved: DatasetSpec, fingerprint: str, results: list[ShardResult], skipped: int, redone: int,
            gen_seconds: float, t0: float, is_main: bool, signer: Any) -> Summary:
    """The summary of a run whose shards are all made; the main process writes the manifest,
    ``summary.json``, the dataset card and the seal."""
    root = open_location(resolved.out)
    summary = dataset_stats(root)
    if not summary.complete:
        raise FacegenError(f"{summary.shards - summary.shards_done} of {summary.shards} shards of {root} are "
                           "unfinished: rerun the same command to resume")
    this_run = _merge(results)
    summary.shards_skipped = skipped
    summary.shards_redone = redone
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.images_per_second = round(this_run.accepted / gen_seconds, 3) if this_run.accepted and gen_seconds > 0 else None
    if is_main:
        n_lines = W.write_manifest(root, resolved.num_shards)
        if n_lines != summary.accepted:
            raise FacegenError(f"manifest of {root} has {n_lines} lines for {summary.accepted} samples")
        root.write_bytes(SUMMARY_FILE, W.json_bytes(summary.to_dict()) + b"\n")
        write_dataset_card(root, resolved, summary)  # README.md, the Hugging Face dataset card
        if signer is not None:
            from facegen.provenance.seal import seal_dataset

            seal_dataset(root, fingerprint=fingerprint, identity=signer)
        if isinstance(root, LocalLocation):
            tmp = root.path / W.TMP_DIR
            if tmp.is_dir() and not any(tmp.iterdir()):
                tmp.rmdir()
        logger.info("%s", summary.format_text())
    return summary


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
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
