"""One signed C2PA manifest for a whole dataset: ``credentials.zip``.

Why not a manifest in every image? C2PA signatures are not reproducible: besides ECDSA's
random nonce, c2pa-rs salts every assertion box with 16 random bytes (measured: two
signings of the same PNG with the same Ed25519 key and a fixed manifest label still differ),
and the dataset promises that the same spec gives byte-identical shards after any crash and
resume. So the dataset's images carry the deterministic marks (the invisible watermark with
their content id, and the metadata), and when every shard is done the dataset gets one
seal: a ZIP holding ``dataset.json`` (the spec fingerprint and the sha256 of
``manifest.jsonl``, ``spec.yaml``, ``identities.npy`` and every shard or image file), signed
with C2PA (action ``c2pa.created``, ``trainedAlgorithmicMedia``). The seal is rewritten when
a resumed run completes: its signature bytes differ from run to run, the files it vouches for
do not. :func:`verify_seal` checks the signature and every listed hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any, Iterable

from facegen import __version__
from facegen.errors import FacegenError
from facegen.paths import sha256_of
from facegen.provenance import credentials as _cred

logger = logging.getLogger(__name__)

SEAL = "credentials.zip"
RECORD = "dataset.json"
ASSERTION = "org.facegen.dataset"
_SEALED_TOP = ("manifest.jsonl", "spec.yaml", "identities.npy")
_SEALED_DIRS = ("shards", "images", "crops112")


def sealed_files(root: Path) -> list[str]:
    """The dataset files a seal vouches for (relative POSIX paths, sorted)."""
    root = Path(root)
    out = [name for name in _SEALED_TOP if (root / name).is_file()]
    for d in _SEALED_DIRS:
        if (root / d).is_dir():
            out.extend(p.relative_to(root).as_posix() for p in (root / d).rglob("*") if p.is_file())
    return sorted(out)


def _record_zip(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(RECORD, date_time=(1980, 1, 1, 0, 0, 0))
        zf.writestr(info, json.dumps(record, sort_keys=True, indent=1))
    return buf.getvalue()


def seal_dataset(root: Any, *, fingerprint: str, identity: _cred.SigningIdentity,
                 extra: dict[str, Any] | None = None) -> str:
    """Write ``root/credentials.zip`` (``root``: a folder or a store location); the signed record of
    every dataset file's sha256; return where it was written."""
    from facegen.io.location import LocalLocation, open_location  # noqa: PLC0415 - facegen.io imports this package

    loc = open_location(root)
    if isinstance(loc, LocalLocation):
        files = {rel: sha256_of(loc.path / rel) for rel in sealed_files(loc.path)}
    else:   # a store: one listing, then each object read once
        listed = loc.listing()
        names = [n for n in _SEALED_TOP if n in listed] + [n for n in listed if n.split("/", 1)[0] in _SEALED_DIRS]
        files = {rel: loc.sha256(rel) for rel in sorted(names)}
    record = {"dataset": fingerprint, "facegen_version": __version__, "files": files, **(extra or {})}
    fields = {"dataset": fingerprint, "ai_generated": True, "files": len(files),
              "manifest_sha256": files.get("manifest.jsonl")}
    manifest = _cred.build_manifest(_cred.CREATED, title=SEAL, fields=fields)
    manifest["assertions"].append({"label": ASSERTION, "data": {"record_sha256": hashlib.sha256(
        json.dumps(record, sort_keys=True).encode()).hexdigest()}})
    data = _cred.sign_bytes(_record_zip(record), "ZIP", manifest, identity)
    loc.write_bytes(SEAL, data)
    logger.info("sealed %d files of %s with %s", len(files), loc, identity.describe())
    return loc.child(SEAL)


def verify_seal(path: str | Path, trust: Iterable[bytes] = ()) -> dict[str, Any]:
    """The seal's C2PA state and whether every file it lists is unchanged.

    Hostile seals are expected: the file is read through :mod:`facegen.io.files` (regular file,
    ``$FACEGEN_MAX_FILE_BYTES``); the signature is checked first and nothing of an unsigned or
    invalid seal is inflated; ``dataset.json`` is inflated to at most ``$FACEGEN_MAX_JSON_BYTES``
    and shape-checked; only regular files inside the seal's folder are hashed.
    """
    from facegen.io import files as F  # noqa: PLC0415 - facegen.io imports this package
    from facegen.io.arrays import open_zip, read_zip_member  # noqa: PLC0415

    path = Path(path)
    name = str(path)
    data = F.read_bytes(path, what="seal", text=False)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return {"file": name, "c2pa": {"state": "absent"}, "files_ok": False, "not_a_seal": True}
    c2pa = _cred.read_credentials(data, "ZIP", trust)
    base = {"file": name, "c2pa": c2pa, "files_ok": False}
    if c2pa.get("state") not in ("valid-untrusted", "trusted"):
        return {**base, "error": "the seal's signature is not valid: its contents were not read"}
    try:
        with open_zip(data, name=name) as zf:
            raw = read_zip_member(zf, RECORD, name=name, cap=F.max_json_bytes(), env=F.MAX_JSON_BYTES_ENV)
        record = F.parse_json(raw, name=f"{name}: {RECORD}", max_bytes=len(raw) + 1,
                              schema={"dataset": F.Opt((str, type(None))), "files": F.AnyKey(str)})
    except FacegenError as exc:
        return {**base, "error": f"no readable {RECORD}: {exc}"}
    root = path.parent
    listed = record["files"]
    changed = [rel for rel, digest in listed.items() if _hash_inside(root, rel) != digest]
    unlisted = sorted(set(sealed_files(root)) - set(listed))
    return {**base, "dataset": record.get("dataset"), "files": len(listed), "changed": changed,
            "unlisted": unlisted, "files_ok": not changed and not unlisted}


def _hash_inside(root: Path, rel: str) -> str | None:
    """The sha256 of ``root/rel`` if it is a regular file inside ``root`` (no absolute path, no
    ``..``, no link out), else None (reported as changed)."""
    from facegen.io.files import open_file  # noqa: PLC0415

    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    try:
        with open_file(root / rel, what="sealed file", within=root) as fh:
            digest = hashlib.sha256()
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except (FacegenError, OSError):
        return None
    return digest.hexdigest()
