"""The start of a run on a dataset folder, and its undoing.

Everything is validated (the spec, the embedding files, the identity sampling) before the
folder is created; the run then holds the folder's lock file (:mod:`facegen.dataset.lock`: a
second run on it is refused) and writes ``spec.yaml`` (with the spec's fingerprint and the
sha256 of ``identities.npy``) and ``identities.npy``.  A rerun compares its spec with the
stored one (a different spec is refused) and checks ``identities.npy`` against its record.
A run that fails before finishing a shard of a folder it started removes what it wrote
(:func:`remove_started`), so a corrected spec can use the folder.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from facegen import __version__
from facegen.dataset.identities import GaussianPrior, load_embeddings, sample_identities
from facegen.dataset.lock import LOCK_FILE, FolderLock
from facegen.dataset.spec import SPEC_VERSION, DatasetSpec, read_stored_extra, read_stored_fingerprint
from facegen.dataset.card import CARD_FILE
from facegen.dataset.stats import IDENTITIES_FILE, SPEC_FILE, SUMMARY_FILE
from facegen.dataset.writers import MANIFEST
from facegen.io.atomic import atomic_write_bytes, remove_stale_temps
from facegen.provenance.seal import SEAL
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.paths import sha256_of

logger = logging.getLogger(__name__)

#: the files an atomic write puts at the top of a dataset folder
ROOT_FILES = (SPEC_FILE, IDENTITIES_FILE, SUMMARY_FILE, MANIFEST, CARD_FILE, SEAL)


def identity_vectors(spec: DatasetSpec) -> np.ndarray:
    prior = GaussianPrior.from_npy(spec.prior) if spec.prior else None
    real = load_embeddings(spec.reject_near) if spec.reject_near else None
    assert spec.embedding_dim is not None
    return sample_identities(spec.num_ids, spec.embedding_dim, spec.seed, max_cosine=spec.max_cosine,
                             prior=prior, reject_near=real, leakage_threshold=spec.leakage_threshold)


def _is_empty(root: Path) -> bool:
    """No entries but a (stale) lock file."""
    return all(p.name == LOCK_FILE for p in root.iterdir())


def check_folder(spec: DatasetSpec) -> DatasetSpec:
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
    root = Path(spec.out)
    root.mkdir(parents=True, exist_ok=True)
    spec_file, ids_file = root / SPEC_FILE, root / IDENTITIES_FILE
    if not spec_file.is_file():
        data = _npy_bytes(identities if identities is not None else identity_vectors(spec))
        record = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        spec.to_yaml(spec_file, runtime=False, extra={"fingerprint": fingerprint, "spec_version": SPEC_VERSION,
                                                       "facegen_version": __version__, "identities": record})
        atomic_write_bytes(ids_file, data)
        return
    record = read_stored_extra(spec_file, "identities")
    problem = _identities_problem(spec, record)
    if problem is None:
        return
    logger.warning("%s: %s: sampling the identities again", root, problem)
    data = _npy_bytes(identity_vectors(spec))
    if isinstance(record, dict) and record.get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
        raise FacegenError(f"{ids_file} was damaged and sampling again gave other identities (another numpy "
                           "version?): this dataset cannot be resumed here; generate it in a new folder")
    atomic_write_bytes(ids_file, data)


def start_folder(spec: DatasetSpec, resolved: DatasetSpec, fingerprint: str
                 ) -> tuple[FolderLock, DatasetSpec, bool, bool]:
    """Sample a new folder's identities (the last check that can fail on the spec), then create
    the folder, lock it and write the start files.  Returns (lock, resolved spec, whether this
    run starts the folder, whether it created it); on an error nothing it made is left."""
    root = Path(resolved.out)
    fresh = not (root / SPEC_FILE).is_file()
    identities = identity_vectors(resolved) if fresh else None
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
    for name in ROOT_FILES:                          # the folder is ours now: a killed run's half-written
        remove_stale_temps(root / name)              # root files go (shards clean their own)
    try:
        if fresh and (root / SPEC_FILE).is_file():  # another run started the folder meanwhile
            fresh, identities = False, None                 # (so nothing of it is removed on an error)
            resolved = check_folder(spec)
        elif fresh and not _is_empty(root):
            raise InvalidArgumentError(f"{root} is not empty any more (another program writes to it?): "
                                       "choose a new or empty folder")
        _write_start_files(resolved, fingerprint, identities)
    except BaseException:
        if fresh:
            remove_started(root, lock, created)
        lock.release()
        raise
    return lock, resolved, fresh, created


def _rmdir_quietly(root: Path) -> None:
    try:
        root.rmdir()
    except OSError:
        pass


def remove_started(root: Path, lock: FolderLock, created: bool) -> None:
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

