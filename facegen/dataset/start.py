"""The start of a run on a dataset folder, and its undoing.

Everything is validated (the spec, the embedding files, the identity sampling) before the
folder is created; the run then holds the folder's lock file (:mod:`facegen.dataset.lock`: a
second run on it is refused) and writes ``spec.yaml`` (with the spec's fingerprint and the
sha256 of ``identities.npy``) and ``identities.npy``.  A rerun compares its spec with the
stored one (a different spec is refused) and checks ``identities.npy`` against its record.
A run that fails before finishing a shard of a folder it started removes what it wrote
(:func:`remove_started`), so a corrected spec can use the folder.

``spec.yaml`` also records the numerics the images are made with (:mod:`facegen.numerics`:
library versions, a kernel fingerprint, the CPU thread count, the GPU): a resume under other
numerics is refused, since the dataset would mix two float roundings, unless the spec's
``allow_new_numerics`` (``--allow-new-numerics``) is set; the new numerics are then appended
to the record, and the card says so.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from facegen import __version__
from facegen.dataset.identities import GaussianPrior, load_embeddings, sample_identities
from facegen.dataset.lock import LOCK_FILE, RunLock, lock_for
from facegen.dataset.spec import (
    SPEC_VERSION, DatasetSpec, read_stored_extra, read_stored_fingerprint, stored_numerics)
from facegen.dataset.spec_yaml import load_spec_yaml
from facegen.dataset.card import CARD_FILE
from facegen.dataset.stats import IDENTITIES_FILE, SPEC_FILE, SUMMARY_FILE, spec_file_of
from facegen.dataset.writers import MANIFEST
from facegen.io.atomic import atomic_write_bytes, remove_stale_temps
from facegen.provenance.seal import SEAL
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.io.storage import Location
from facegen.io.location import LocalLocation, open_location
from facegen.numerics import describe_change, numerics_record

logger = logging.getLogger(__name__)

#: the files an atomic write puts at the top of a dataset folder
ROOT_FILES = (SPEC_FILE, IDENTITIES_FILE, SUMMARY_FILE, MANIFEST, CARD_FILE, SEAL)


def identity_vectors(spec: DatasetSpec) -> np.ndarray:
    prior = GaussianPrior.from_npy(spec.prior) if spec.prior else None
    real = load_embeddings(spec.reject_near) if spec.reject_near else None
    assert spec.embedding_dim is not None
    return sample_identities(spec.num_ids, spec.embedding_dim, spec.seed, max_cosine=spec.max_cosine,
                             prior=prior, reject_near=real, leakage_threshold=spec.leakage_threshold)


def _is_empty(loc: Location) -> bool:
    """No entries but a (stale) lock file."""
    return loc.is_empty(ignore=(LOCK_FILE,))


def current_numerics(spec: DatasetSpec, on_gpu: bool) -> dict[str, Any]:
    """The numerics this run makes images with: on the CPU, at the generator's fixed thread
    count; on a GPU, also the device and CUDA version (its kernels are not fingerprinted)."""
    import torch

    threads = int(spec.generator.get("cpu_threads", 1)) if not on_gpu else None
    record = numerics_record(threads if threads is not None else 1)
    if on_gpu and torch.cuda.is_available():
        record["device"] = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
        record["threads"] = None
    else:
        record["device"] = "cpu"
    return record


def _same_numerics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("fingerprint") == b.get("fingerprint") and a.get("device") == b.get("device")


def check_numerics(root: Location, spec_file: Path, spec: DatasetSpec, numerics: dict[str, Any]) -> None:
    """Refuse to resume the dataset in ``root`` (its ``spec.yaml``: ``spec_file``) under numerics it
    was not made with, unless ``spec.allow_new_numerics``."""
    record = stored_numerics(spec_file)
    if not record:
        logger.warning("%s records no numerics (made before facegen recorded them): resuming without a check", root)
        return
    if any(_same_numerics(e, numerics) for e in record) or spec.allow_new_numerics:
        return
    last = record[-1]
    change = describe_change(last, numerics)
    if last.get("device") != numerics.get("device"):
        change = f"device {last.get('device')} -> {numerics.get('device')}; " + change
    raise InvalidArgumentError(
        f"{root} was made with other numerics ({change}): resuming would mix two float roundings in one dataset; "
        "install the versions it was made with (facegen's requirements.lock) or rerun with --allow-new-numerics "
        "(the dataset card records it)")


#: folders of the operating system a dataset is never written into (as root they are writable)
SYSTEM_FOLDERS = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc",
                  "/sys", "/dev", "/run", "/var/lib", "/var/log", "/var/cache", "/var/spool")


def refuse_system_folder(loc: Location) -> None:
    """A local dataset location inside one of :data:`SYSTEM_FOLDERS` is refused in one line."""
    if not isinstance(loc, LocalLocation):
        return
    path = loc.path.absolute().resolve()
    for folder in SYSTEM_FOLDERS:
        if path == Path(folder) or Path(folder) in path.parents:
            raise InvalidArgumentError(f"{loc.path} is inside the system folder {folder}: a dataset is never "
                                       "written there; choose a folder of your own")


def check_folder(spec: DatasetSpec, numerics: dict[str, Any] | None = None) -> DatasetSpec:
    """Resolve the spec and compare it with the one stored in the folder (read-only), and the
    run's ``numerics`` with the recorded ones (:func:`check_numerics`); the resolved spec's
    ``out`` is absolute (workers, Ray actors, may run elsewhere) or a store URL."""
    loc = open_location(spec.out)
    refuse_system_folder(loc)
    spec_file = spec_file_of(loc)
    if spec_file is not None:
        stored = DatasetSpec.from_yaml(spec_file, out=loc.url)
        resolved = spec.resolved(stored=stored)
        if resolved.fingerprint() != read_stored_fingerprint(spec_file):
            changed = resolved.differences(stored) or ["(files or version)"]
            raise InvalidArgumentError(
                f"{loc} holds a dataset made with a different spec (changed: {', '.join(changed)}); "
                "use a new output folder, or rerun with the original settings to resume")
        if numerics is not None:
            check_numerics(loc, spec_file, resolved, numerics)
    elif isinstance(loc, LocalLocation) and loc.path.exists() and (not loc.path.is_dir() or not _is_empty(loc)):
        raise InvalidArgumentError(
            f"{loc} exists and is not an empty folder or a facegen dataset: choose a new or empty folder")
    elif not isinstance(loc, LocalLocation) and not _is_empty(loc):
        raise InvalidArgumentError(
            f"{loc} holds objects but no facegen dataset: choose a new or empty prefix")
    else:
        resolved = spec.resolved()
    resolved.out = loc.url
    return resolved


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _identities_problem(spec: DatasetSpec, record: Any) -> str | None:
    """What is wrong with a started folder's ``identities.npy`` (None: it is as recorded)."""
    loc = open_location(spec.out)
    size = loc.size(IDENTITIES_FILE)
    if size is None:
        return f"{IDENTITIES_FILE} is missing"
    if isinstance(record, dict) and "sha256" in record:
        if size != record.get("size"):
            return f"{IDENTITIES_FILE} has {size} bytes, {record.get('size')} recorded"
        if loc.sha256(IDENTITIES_FILE) != record["sha256"]:
            return f"{IDENTITIES_FILE} does not match its recorded sha256"
        return None
    try:  # a folder started before checksums were recorded: its shape
        shape = np.load(loc.local_file(IDENTITIES_FILE, refresh=True), mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError, EOFError):
        return f"{IDENTITIES_FILE} is unreadable"
    expected = (spec.num_ids, spec.embedding_dim)
    return None if shape == expected else f"{IDENTITIES_FILE} has shape {shape}, expected {expected}"


def _append_numerics(loc: Location, spec_file: Path, numerics: dict[str, Any]) -> None:
    """Record a resume under new numerics (allowed by ``allow_new_numerics``) in ``spec.yaml``."""
    import yaml

    record = stored_numerics(spec_file)
    if not record or any(_same_numerics(e, numerics) for e in record):
        return
    data = load_spec_yaml(spec_file)
    data["numerics"] = [*record, {**numerics, "allowed_by": "--allow-new-numerics"}]
    logger.warning("%s: resuming under new numerics (%s), recorded in %s", loc,
                   describe_change(record[-1], numerics), SPEC_FILE)
    loc.write_bytes(SPEC_FILE, yaml.safe_dump(data, sort_keys=False, default_flow_style=None,
                                              allow_unicode=True).encode("utf-8"))


def _write_start_files(spec: DatasetSpec, fingerprint: str, identities: np.ndarray | None = None,
                       numerics: dict[str, Any] | None = None) -> None:
    """``spec.yaml`` then ``identities.npy`` (``identities``: already sampled); on a resume,
    ``identities.npy`` is checked against its recorded sha256 and sampled again if damaged,
    and new ``numerics`` (allowed by the spec) are appended to the record."""
    loc = open_location(spec.out)
    spec_file = spec_file_of(loc)
    if spec_file is None:
        data = _npy_bytes(identities if identities is not None else identity_vectors(spec))
        record = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        extra: dict[str, Any] = {"fingerprint": fingerprint, "spec_version": SPEC_VERSION,
                                 "facegen_version": __version__, "identities": record}
        if numerics is not None:
            extra["numerics"] = [numerics]
        text = spec.to_yaml(runtime=False, extra=extra)
        loc.write_bytes(SPEC_FILE, text.encode("utf-8"))
        loc.write_bytes(IDENTITIES_FILE, data)
        return
    if numerics is not None:
        _append_numerics(loc, spec_file, numerics)
    record = read_stored_extra(spec_file, "identities")
    problem = _identities_problem(spec, record)
    if problem is None:
        return
    logger.warning("%s: %s: sampling the identities again", loc, problem)
    data = _npy_bytes(identity_vectors(spec))
    if isinstance(record, dict) and record.get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
        raise FacegenError(f"{loc / IDENTITIES_FILE} was damaged and sampling again gave other identities (another "
                           "numpy version?): this dataset cannot be resumed here; generate it in a new folder")
    loc.write_bytes(IDENTITIES_FILE, data)


def start_folder(spec: DatasetSpec, resolved: DatasetSpec, fingerprint: str, numerics: dict[str, Any] | None = None
                 ) -> tuple[RunLock, DatasetSpec, bool, bool]:
    """Sample a new folder's identities (the last check that can fail on the spec), then create
    the folder, lock it and write the start files.  Returns (lock, resolved spec, whether this
    run starts the folder, whether it created it); on an error nothing it made is left."""
    loc = open_location(resolved.out)
    fresh = not loc.exists(SPEC_FILE)
    identities = identity_vectors(resolved) if fresh else None
    created = loc.prepare()
    lock = lock_for(loc)
    try:
        lock.acquire()
    except BaseException:
        if created:
            _rmdir_quietly(loc)
        raise
    if isinstance(loc, LocalLocation):
        for name in ROOT_FILES:                      # the folder is ours now: a killed run's half-written
            remove_stale_temps(loc.path / name)      # root files go (shards clean their own)
    try:
        if fresh and loc.exists(SPEC_FILE):         # another run started the folder meanwhile
            fresh, identities = False, None                 # (so nothing of it is removed on an error)
            resolved = check_folder(spec, numerics)
        elif fresh and not _is_empty(loc):
            raise InvalidArgumentError(f"{loc} is not empty any more (another program writes to it?): "
                                       "choose a new or empty folder")
        _write_start_files(resolved, fingerprint, identities, numerics)
    except BaseException:
        if fresh:
            remove_started(loc, lock, created)
        lock.release()
        raise
    return lock, resolved, fresh, created


def _rmdir_quietly(loc: Location) -> None:
    if isinstance(loc, LocalLocation):
        try:
            loc.path.rmdir()
        except OSError:
            pass


def remove_started(root: str | Path | Location, lock: RunLock, created: bool) -> None:
    """Remove what a failed start wrote into a folder that was empty (under its lock)."""
    loc = open_location(root)
    if isinstance(loc, LocalLocation):
        for child in loc.path.iterdir():
            if child.name != LOCK_FILE:
                loc.delete(child.name)
    else:
        for name in sorted(loc.listing()):
            if name != LOCK_FILE:
                loc.delete(name)
    lock.release()
    if created:
        _rmdir_quietly(loc)
    logger.info("%s: the run failed before finishing a shard: removed what it had written", loc)
