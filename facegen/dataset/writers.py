"""Dataset writers: WebDataset ``.tar`` shards, ImageFolder trees, JSON-lines manifests.

Layout of a dataset folder::

    spec.yaml                      the resolved spec and its fingerprint
    identities.npy                 the sampled identity vectors (num_ids, dim), float32
    shards/shard-000000.tar        webdataset: <key>.png + <key>.json (+ <key>.crop112.png)
    images/000000/000.png          imagefolder (crops112/000000/000.png with crops)
    parts/shard-000000.jsonl       the shard's manifest lines: written last = shard done
    parts/shard-000000.stats.json  accepted / rejected / dropped counts of the shard
    parts/shard-000000.emb.npy     independent-encoder embeddings of its images (if any)
    parts/shard-000000.files.json  size + sha256 of every file of the shard: written last = shard done
    manifest.jsonl                 all parts concatenated, written at the end
    .tmp/                          work in progress (a shard's files before they are renamed)
    .lock                          held by the run writing the folder (:mod:`facegen.dataset.lock`)

A resume checks every finished shard's files against the sizes and sha256 in its
``files.json`` and redoes a shard whose files do not match (a truncated tar, a zeroed PNG,
an emptied part), saying which file was damaged.

Every file is written under a temporary name and renamed (``os.replace``) when complete
(:mod:`facegen.io.atomic`: fsync'ed first, the folder fsync'ed after),
and every byte is a function of the spec (tar headers carry no times or owners, PNGs no
dates), so a resumed run ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import FacegenError
from facegen.io.atomic import atomic_write_bytes, remove_stale_temps, replace_durably
from facegen.paths import sha256_of

SHARDS_DIR = "shards"
IMAGES_DIR = "images"
CROPS_DIR = "crops112"
PARTS_DIR = "parts"
TMP_DIR = ".tmp"
MANIFEST = "manifest.jsonl"
CROP_SIZE = 112

AlignFn = Callable[[np.ndarray], "np.ndarray | None"]


def shard_name(shard: int) -> str:
    return f"shard-{shard:06d}"


def part_path(root: Path, shard: int) -> Path:
    return root / PARTS_DIR / f"{shard_name(shard)}.jsonl"


def stats_path(root: Path, shard: int) -> Path:
    return root / PARTS_DIR / f"{shard_name(shard)}.stats.json"


def embeddings_path(root: Path, shard: int) -> Path:
    return root / PARTS_DIR / f"{shard_name(shard)}.emb.npy"


def tar_path(root: Path, shard: int) -> Path:
    return root / SHARDS_DIR / f"{shard_name(shard)}.tar"


def image_relpath(identity: int, index: int, crop: bool = False) -> str:
    return f"{CROPS_DIR if crop else IMAGES_DIR}/{identity:06d}/{index:03d}.png"


def files_path(root: Path, shard: int) -> Path:
    return root / PARTS_DIR / f"{shard_name(shard)}.files.json"


def json_bytes(record: Mapping[str, Any]) -> bytes:
    """Canonical compact JSON (sorted keys), the form used in shards and manifests.  Always
    valid JSON: a non-finite float (NaN, infinity, which ``json`` would write as the non-JSON
    ``NaN``) becomes ``null``."""
    try:
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite_or_none(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    return text.encode("utf-8")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, np.generic):
        return _finite_or_none(value.item())
    return value


def encode_png(rgb: np.ndarray, metadata: Mapping[str, Any],
               provenance: Mapping[str, Any] | None = None) -> bytes:
    """PNG bytes of ``rgb`` carrying facegen's provenance (AI-generated tag, and the
    invisible watermark unless the spec's ``provenance`` turns it off). No per-image C2PA
    manifest: its signature is not reproducible; the dataset's seal covers the image."""
    from facegen.io import encode_png as encode_marked_png
    from facegen.provenance import Provenance

    wanted = {"watermark": True, "c2pa": True, **dict(provenance or {})}
    options = Provenance(watermark=bool(wanted["watermark"]), c2pa="dataset_seal" if wanted["c2pa"] else False)
    return encode_marked_png(rgb, dict(metadata), provenance=options)


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class ShardWriter:
    """Writes one shard's samples into the temporary area; ``commit`` moves them into place.

    ``add`` takes samples in key order.  ``abort`` (or a crash) leaves only temporary files,
    which the next run removes (:func:`clean_shard_temps`).
    """

    def __init__(self, root: Path, shard: int, fmt: str) -> None:
        self.root = Path(root)
        self.shard = shard
        self.fmt = fmt
        tmp_root = self.root / TMP_DIR
        tmp_root.mkdir(parents=True, exist_ok=True)
        self._stem = tmp_root / f"{shard_name(shard)}.{os.getpid()}"
        self._tar: tarfile.TarFile | None = None
        self._identities: list[int] = []
        if fmt == "webdataset":
            self._tar_tmp = Path(f"{self._stem}.tar")
            self._tar = tarfile.open(self._tar_tmp, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - open until commit
        elif fmt == "imagefolder":
            self._dir_tmp = Path(f"{self._stem}.d")
            self._dir_tmp.mkdir(parents=True, exist_ok=False)
        else:
            raise FacegenError(f"unknown dataset format {fmt!r}")

    def location(self, identity: int, index: int) -> dict[str, Any]:
        """Where a sample lands once committed (the manifest's file/shard fields)."""
        if self.fmt == "webdataset":
            return {"shard": f"{SHARDS_DIR}/{shard_name(self.shard)}.tar"}
        return {"file": image_relpath(identity, index)}

    def add(self, key: str, identity: int, index: int, png: bytes, record: Mapping[str, Any],
            crop_png: bytes | None = None) -> None:
        if self._tar is not None:
            members = [(f"{key}.png", png), (f"{key}.json", json_bytes(record))]
            if crop_png is not None:
                members.append((f"{key}.crop112.png", crop_png))
            for name, data in sorted(members):
                self._tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
            return
        if not self._identities or self._identities[-1] != identity:
            self._identities.append(identity)
        self._write(self._dir_tmp / image_relpath(identity, index), png)
        if crop_png is not None:
            self._write(self._dir_tmp / image_relpath(identity, index, crop=True), crop_png)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        """A file of the shard's temporary folder (the folder is renamed whole on commit):
        written and fsync'ed, so what the rename publishes is on disk."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def commit(self) -> None:
        if self._tar is not None:
            self._tar.close()
            final = tar_path(self.root, self.shard)
            final.parent.mkdir(parents=True, exist_ok=True)
            replace_durably(self._tar_tmp, final)
            self._tar = None
            return
        for sub in (IMAGES_DIR, CROPS_DIR):
            src_root = self._dir_tmp / sub
            if not src_root.is_dir():
                continue
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            for src in sorted(src_root.iterdir()):
                dst = self.root / sub / src.name
                if dst.exists():  # left by a crashed run of this shard: redo it whole
                    shutil.rmtree(dst)
                replace_durably(src, dst)
        shutil.rmtree(self._dir_tmp, ignore_errors=True)

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
            self._tar_tmp.unlink(missing_ok=True)
        elif self.fmt == "imagefolder":
            shutil.rmtree(self._dir_tmp, ignore_errors=True)


def clean_shard_temps(root: Path, shard: int) -> int:
    """Remove the temporary files a crashed run left for ``shard`` (its work in ``.tmp/`` and
    the temporaries of interrupted atomic writes of its part files); return how many."""
    root = Path(root)
    removed = sum(remove_stale_temps(p(root, shard)) for p in (part_path, stats_path, embeddings_path, files_path))
    tmp_root = root / TMP_DIR
    if not tmp_root.is_dir():
        return removed
    for p in tmp_root.glob(f"{shard_name(shard)}.*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed


def write_part(root: Path, shard: int, records: list[Mapping[str, Any]], stats: Mapping[str, Any],
               embeddings: np.ndarray | None, fmt: str | None = None) -> None:
    """Write a shard's manifest lines, counts and embeddings, then (last: the shard is done) the
    size and sha256 of each of its files in ``files.json``.  ``fmt`` (default: from the records)
    says where its images are: one ``.tar`` or one file each."""
    root = Path(root)
    files_path(root, shard).unlink(missing_ok=True)
    if embeddings is not None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(embeddings, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(embeddings_path(root, shard), buf.getvalue())
    else:
        embeddings_path(root, shard).unlink(missing_ok=True)
    atomic_write_bytes(stats_path(root, shard), json_bytes(stats) + b"\n")
    atomic_write_bytes(part_path(root, shard), b"".join(json_bytes(r) + b"\n" for r in records))
    if fmt is None:
        fmt = "webdataset" if any("shard" in r for r in records) or tar_path(root, shard).is_file() else "imagefolder"
    paths = [part_path(root, shard), stats_path(root, shard)]
    if embeddings is not None:
        paths.append(embeddings_path(root, shard))
    if fmt == "webdataset":
        paths.append(tar_path(root, shard))
    else:
        paths += [root / r[key] for r in records for key in ("file", "crop") if r.get(key)]
    listing = {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256_of(p)} for p in paths}
    atomic_write_bytes(files_path(root, shard), json_bytes({"shard": shard, "files": listing}) + b"\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


#: what :func:`shard_problem` says of a shard that was never finished
UNFINISHED = "not finished"


def shard_problem(root: Path, shard: int, fmt: str, checksums: bool = True) -> str | None:
    """None when the shard is done and its files are as recorded; else what is wrong:
    :data:`UNFINISHED`, or the first missing or damaged file (size, then sha256 with
    ``checksums``)."""
    root = Path(root)
    marker = files_path(root, shard)
    if not marker.is_file():
        return UNFINISHED
    rel_marker = marker.relative_to(root).as_posix()
    try:
        listing = json.loads(marker.read_bytes())["files"]
        entries = [(str(rel), int(rec["size"]), str(rec["sha256"])) for rel, rec in listing.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{rel_marker} is unreadable"
    names = {rel for rel, _, _ in entries}
    needed = [part_path(root, shard), stats_path(root, shard)]
    if fmt == "webdataset":
        needed.append(tar_path(root, shard))
    missing = sorted(rel for rel in (p.relative_to(root).as_posix() for p in needed) if rel not in names)
    if missing:
        return f"{rel_marker} does not list {missing[0]}"
    for rel, size, digest in sorted(entries):
        path = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return f"{rel_marker} lists a file outside the dataset: {rel}"
        if not path.is_file():
            return f"{rel} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{rel} has {actual} bytes, {size} recorded"
        if checksums and sha256_of(path) != digest:
            return f"{rel} does not match its recorded sha256"
    return None


def shard_complete(root: Path, shard: int, fmt: str, checksums: bool = False) -> bool:
    """A shard is done when its ``files.json`` exists and its files have the recorded sizes
    (and sha256, with ``checksums``)."""
    return shard_problem(root, shard, fmt, checksums=checksums) is None


def write_manifest(root: Path, num_shards: int) -> int:
    """Concatenate the parts, in shard order, into ``manifest.jsonl``; return the line count."""
    chunks = [part_path(root, k).read_bytes() for k in range(num_shards)]
    atomic_write_bytes(Path(root) / MANIFEST, b"".join(chunks))
    return sum(c.count(b"\n") for c in chunks)


def read_tar_samples(path: Path) -> dict[str, dict[str, bytes]]:
    """``{key: {extension: bytes}}`` of a WebDataset shard (for tests and stats)."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r") as tf:
        for member in tf.getmembers():
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            fh = tf.extractfile(member)
            if fh is not None:
                out.setdefault(key, {})[ext] = fh.read()
    return out


class ArcFaceCropFn:
    """``align_fn`` for 112x112 ArcFace-aligned crops: detect (dlib by default), largest face,
    warp to the ArcFace template.  Returns None when no face is found.  Picklable: the
    detector is loaded in the process that first calls it."""

    def __init__(self, backend: str = "dlib", size: int = CROP_SIZE) -> None:
        self.backend = backend
        self.size = size

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        from facegen.errors import NoFaceError
        from facegen.faces import detect_faces, select_faces, warp_face

        try:
            face = select_faces(detect_faces(rgb, backend=self.backend), "largest")[0]
        except NoFaceError:
            return None
        crop, _ = warp_face(rgb, face.kps, self.size, "arcface")
        return crop
