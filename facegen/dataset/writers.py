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

Every file is written under a temporary name and renamed when complete (:mod:`facegen.io.atomic`:
fsync'ed first, the folder fsync'ed after), and every byte is a function of the spec (tar headers carry
no times or owners, PNGs no dates), so a resumed run ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import FacegenError
from facegen.io.atomic import atomic_write_bytes, remove_stale_temps, replace_durably, temp_path_for
from facegen.io.files import AnyKey, Opt, parse_json
from facegen.io.storage import Location
from facegen.io.location import LocalLocation, open_location
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


# names relative to the dataset's root (a folder or a store prefix: :mod:`facegen.io.location`)
def part_name(shard: int) -> str:
    return f"{PARTS_DIR}/{shard_name(shard)}.jsonl"


def stats_name(shard: int) -> str:
    return f"{PARTS_DIR}/{shard_name(shard)}.stats.json"


def embeddings_name(shard: int) -> str:
    return f"{PARTS_DIR}/{shard_name(shard)}.emb.npy"


def files_name(shard: int) -> str:
    return f"{PARTS_DIR}/{shard_name(shard)}.files.json"


def tar_name(shard: int) -> str:
    return f"{SHARDS_DIR}/{shard_name(shard)}.tar"


def image_relpath(identity: int, index: int, crop: bool = False) -> str:
    return f"{CROPS_DIR if crop else IMAGES_DIR}/{identity:06d}/{index:03d}.png"


# the same files in a local dataset folder
def part_path(root: Path, shard: int) -> Path:
    return Path(root) / part_name(shard)


def stats_path(root: Path, shard: int) -> Path:
    return Path(root) / stats_name(shard)


def embeddings_path(root: Path, shard: int) -> Path:
    return Path(root) / embeddings_name(shard)


def tar_path(root: Path, shard: int) -> Path:
    return Path(root) / tar_name(shard)


def files_path(root: Path, shard: int) -> Path:
    return Path(root) / files_name(shard)


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
    """PNG bytes of ``rgb`` carrying facegen's provenance: :func:`encode_pngs` for one image."""
    return encode_pngs([(rgb, metadata, "image.png")], provenance)[0]


def encode_pngs(items: Sequence[tuple[np.ndarray, Mapping[str, Any], str]],
                provenance: Mapping[str, Any] | None = None, device: str | None = None) -> list[bytes]:
    """PNG bytes of each ``(rgb, metadata, title)`` with the AI-generated tag and (unless the spec turns it off)
    the watermark, marked in one call on ``device`` (the generator's; ``None``: CUDA when available). No
    per-image C2PA manifest (its signature is not reproducible): the dataset's seal covers the image."""
    from facegen.io import encode_pngs as encode_marked_pngs
    from facegen.provenance import Provenance

    wanted = {"watermark": True, "c2pa": True, **dict(provenance or {})}
    seal = "dataset_seal" if wanted["c2pa"] else False
    options = Provenance(watermark=bool(wanted["watermark"]), c2pa=seal, device=device)
    return encode_marked_pngs([(rgb, dict(meta), title) for rgb, meta, title in items], provenance=options)


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


Root = "str | os.PathLike[str] | Location"


class ShardWriter:
    """Writes one shard's samples into local scratch; ``commit`` publishes them whole.

    ``root`` is the dataset's location (a folder or a store prefix, :func:`open_location`); the
    work in progress is in its :meth:`~facegen.io.location.Location.scratch` (``root/.tmp`` on a
    folder, a private local folder on a store), so each worker writes its own shards to the store.
    ``add`` takes samples in key order.  ``abort`` (or a crash) leaves only scratch files, which
    the next run removes (:func:`clean_shard_temps`); nothing reaches the store before ``commit``.
    """

    def __init__(self, root: Root, shard: int, fmt: str) -> None:
        self.loc = open_location(root)
        self.shard = shard
        self.fmt = fmt
        self._stem = self.loc.scratch() / f"{shard_name(shard)}.{os.getpid()}"
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
            return {"shard": tar_name(self.shard)}
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

    def commit(self) -> dict[str, dict[str, Any]]:
        """Publish the shard's files; return ``{name: {size, sha256}}`` of each (for ``files.json``)."""
        published: dict[str, dict[str, Any]] = {}
        if self._tar is not None:
            self._tar.close()
            self._tar = None
            size, digest = self.loc.publish_file(tar_name(self.shard), self._tar_tmp)
            return {tar_name(self.shard): {"size": size, "sha256": digest}}
        for sub in (IMAGES_DIR, CROPS_DIR):
            src_root = self._dir_tmp / sub
            if not src_root.is_dir():
                continue
            for src in sorted(src_root.iterdir()):
                for f in sorted(src.iterdir()):
                    published[f"{sub}/{src.name}/{f.name}"] = {"size": f.stat().st_size, "sha256": sha256_of(f)}
                rel = f"{sub}/{src.name}"
                if isinstance(self.loc, LocalLocation):  # one rename of the identity's folder
                    dst = self.loc.path / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if dst.exists():  # left by a crashed run of this shard: redo it whole
                        shutil.rmtree(dst)
                    replace_durably(src, dst)
                else:                                    # one whole object per image
                    for f in sorted(src.iterdir()):
                        self.loc.publish_file(f"{rel}/{f.name}", f)
        shutil.rmtree(self._dir_tmp, ignore_errors=True)
        return published

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
            self._tar_tmp.unlink(missing_ok=True)
        elif self.fmt == "imagefolder":
            shutil.rmtree(self._dir_tmp, ignore_errors=True)


def clean_shard_temps(root: Root, shard: int) -> int:
    """Remove the temporary files a crashed run left for ``shard`` (its work in the scratch folder
    and the temporaries of interrupted atomic writes of its part files); return how many.  A store
    holds none: nothing is written there under a temporary name."""
    loc = open_location(root)
    if not isinstance(loc, LocalLocation):
        return 0
    removed = sum(remove_stale_temps(loc.path / name(shard))
                  for name in (part_name, stats_name, embeddings_name, files_name))
    tmp_root = loc.path / TMP_DIR
    if not tmp_root.is_dir():
        return removed
    for p in tmp_root.glob(f"{shard_name(shard)}.*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed


def write_part(root: Root, shard: int, records: list[Mapping[str, Any]], stats: Mapping[str, Any],
               embeddings: np.ndarray | None, fmt: str | None = None,
               published: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Write a shard's manifest lines, counts and embeddings, then (last: the shard is done) the
    size and sha256 of each of its files in ``files.json``.  ``published``: the size and sha256 of
    its image files as :meth:`ShardWriter.commit` returned them (else they are read back); ``fmt``
    (default: from the records) says where its images are: one ``.tar`` or one file each."""
    loc = open_location(root)
    loc.delete(files_name(shard))
    listing: dict[str, dict[str, Any]] = {}

    def put(name: str, data: bytes) -> None:
        size, digest = loc.write_bytes(name, data)
        listing[name] = {"size": size, "sha256": digest}

    if embeddings is not None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(embeddings, dtype=np.float32), allow_pickle=False)
        put(embeddings_name(shard), buf.getvalue())
    else:
        loc.delete(embeddings_name(shard))
    put(stats_name(shard), json_bytes(stats) + b"\n")
    put(part_name(shard), b"".join(json_bytes(r) + b"\n" for r in records))
    if fmt is None:
        fmt = "webdataset" if any("shard" in r for r in records) or loc.exists(tar_name(shard)) else "imagefolder"
    names = ([tar_name(shard)] if fmt == "webdataset" else
             [str(r[key]) for r in records for key in ("file", "crop") if r.get(key)])
    for name in names:
        known = (published or {}).get(name)
        listing[name] = dict(known) if known else {"size": loc.size(name), "sha256": loc.sha256(name)}
    listing = {name: listing[name] for name in sorted(listing)}
    loc.write_bytes(files_name(shard), json_bytes({"shard": shard, "files": listing}) + b"\n")


#: the shape every manifest / part line has (checked on reading: a hand-edited line is one error)
RECORD_SHAPE: dict[str, Any] = {"key": str, "identity": int, "shard": Opt(str), "file": Opt(str)}
#: the shape of a shard's file listing
LISTING_SHAPE: dict[str, Any] = {"files": AnyKey({"size": int, "sha256": str})}


def parse_jsonl(data: bytes, name: str = "dataset records") -> list[dict[str, Any]]:
    """The records of a manifest or shard part (each line shape-checked: a hand-edited line is one error)."""
    return [parse_json(line, name=f"{name} line {n}", schema=RECORD_SHAPE)
            for n, line in enumerate(data.splitlines(), 1) if line.strip()]


#: what :func:`shard_problem` says of a shard that was never finished
UNFINISHED = "not finished"


def shard_problem(root: Root, shard: int, fmt: str, checksums: bool = True,
                  listing: Mapping[str, int] | None = None, marker_bytes: bytes | None = None) -> str | None:
    """None when the shard is done and its files are as recorded; else what is wrong:
    :data:`UNFINISHED`, or the first missing or damaged file (size, then sha256 with
    ``checksums``).  ``listing``: ``{name: size}`` of the whole location, from one
    :meth:`~facegen.io.location.Location.listing`, and ``marker_bytes``: the shard's
    ``files.json`` already read (:func:`shard_problems` reads many at once): a store is then
    asked nothing for this shard."""
    loc = open_location(root)
    marker = files_name(shard)

    def size_of(name: str) -> int | None:
        return listing.get(name) if listing is not None else loc.size(name)

    if size_of(marker) is None:
        return UNFINISHED
    try:
        data = marker_bytes if marker_bytes is not None else loc.read_bytes(marker)
        listed = parse_json(data, name=f"{marker} (shard listing)", schema=LISTING_SHAPE)["files"]
        entries = [(str(rel), int(rec["size"]), str(rec["sha256"])) for rel, rec in listed.items()]
    except FileNotFoundError:
        return UNFINISHED
    except (FacegenError, OSError):
        return f"{marker} is unreadable"
    names = {rel for rel, _, _ in entries}
    needed = [part_name(shard), stats_name(shard)] + ([tar_name(shard)] if fmt == "webdataset" else [])
    missing = sorted(rel for rel in needed if rel not in names)
    if missing:
        return f"{marker} does not list {missing[0]}"
    for rel, size, digest in sorted(entries):
        if rel.startswith("/") or ".." in rel.split("/") or "\\" in rel:
            return f"{marker} lists a file outside the dataset: {rel}"
        actual = size_of(rel)
        if actual is None:
            return f"{rel} is missing"
        if actual != size:
            return f"{rel} has {actual} bytes, {size} recorded"
        if checksums and loc.sha256(rel) != digest:
            return f"{rel} does not match its recorded sha256"
    return None


def shard_problems(root: Root, shards: list[int], fmt: str, checksums: bool = True,
                   listing: Mapping[str, int] | None = None, batch: int = 1000) -> dict[int, str | None]:
    """:func:`shard_problem` of many shards from one listing, their ``files.json`` read ``batch``
    at a time (a store fetches those concurrently): a resume scan makes about
    ``objects / 1000 + shards / batch`` round trips, not one per file."""
    loc = open_location(root)
    listing = loc.listing() if listing is None else listing
    out: dict[int, str | None] = {k: UNFINISHED for k in shards if files_name(k) not in listing}
    finished = [k for k in shards if files_name(k) in listing]
    for start in range(0, len(finished), batch):
        group = finished[start:start + batch]
        try:
            markers = loc.read_many([files_name(k) for k in group])
        except FacegenError:        # one vanished meanwhile: ask each shard alone
            markers = [None] * len(group)
        for k, data in zip(group, markers):
            out[k] = shard_problem(loc, k, fmt, checksums=checksums, listing=listing, marker_bytes=data)
    return {k: out[k] for k in shards}


def shard_complete(root: Root, shard: int, fmt: str, checksums: bool = False,
                   listing: Mapping[str, int] | None = None) -> bool:
    """A shard is done when its ``files.json`` exists and its files have the recorded sizes
    (and sha256, with ``checksums``)."""
    return shard_problem(root, shard, fmt, checksums=checksums, listing=listing) is None


def write_manifest(root: Root, num_shards: int, batch: int = 100) -> int:
    """Concatenate the parts, in shard order, into ``manifest.jsonl``; return the line count.
    Streamed through a local scratch file (memory: ``batch`` parts, whatever the dataset's size),
    the parts fetched ``batch`` at a time (a store fetches them concurrently), then published whole."""
    loc = open_location(root)
    tmp = temp_path_for(loc.scratch() / MANIFEST)
    lines = 0
    try:
        with open(tmp, "wb") as fh:
            for start in range(0, num_shards, batch):
                for chunk in loc.read_many([part_name(k) for k in range(start, min(start + batch, num_shards))]):
                    fh.write(chunk)
                    lines += chunk.count(b"\n")
        loc.publish_file(MANIFEST, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    return lines


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
