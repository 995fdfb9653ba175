"""Reading a face dataset for the report: facegen WebDataset/ImageFolder output or any ImageFolder."""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from facegen.dataset import writers as W
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.io.files import inside
from facegen.io.storage import Location
from facegen.io.location import LocalLocation, open_location

logger = logging.getLogger(__name__)


REPORT_DIR = "report"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
IMAGES_JSONL = "images.jsonl"
SCHEMA_VERSION = 1
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
VEC2FACE_MAX_COSINE = 0.4
MAX_GENUINE_PAIRS_PER_IDENTITY = 5000
DEFAULT_MAX_IMPOSTOR_PAIRS = 200_000
DEFAULT_BATCH_SIZE = 16
MAX_LISTED = 1000              # longest list written into report.json (counts are always exact)
FULL_MATRIX_MAX = 3000        # up to this many faces, impostor pairs come from the full matrix
CROP = 112


# ---------------------------------------------------------------------- reading a dataset
@dataclass(frozen=True)
class Item:
    """One image to analyse: from a file (``path``) or encoded bytes (``data``)."""

    index: int
    path: str | None = None
    data: bytes | None = None


@dataclass
class DatasetSource:
    """The images of a dataset folder, in a fixed order, with their identity labels."""

    root: Any                              # Path of a folder, or the store's Location
    kind: str                              # "facegen" | "imagefolder"
    format: str                            # "webdataset" | "imagefolder"
    identities: list[str]                  # identity names, label order
    labels: np.ndarray                     # (N,) identity label of each image
    names: list[str]                       # (N,) image name: relative path or sample key
    warnings: list[str] = field(default_factory=list)
    spec: Any = None                       # DatasetSpec of a facegen dataset
    _shards: list[tuple[str, dict[str, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def iter_items(self) -> Iterator[Item]:
        """Every image once, streaming (WebDataset shards are read member by member)."""
        if self.format == "webdataset":
            loc = open_location(self.root)
            for shard, wanted in self._shards:
                seen = set()
                tar = loc.child(shard)
                try:
                    with tarfile.open(loc.local_file(shard), "r|") as tf:
                        for member in tf:
                            key, _, ext = member.name.partition(".")
                            if ext != "png" or key not in wanted or not member.isfile():
                                continue
                            fh = tf.extractfile(member)
                            data = fh.read() if fh is not None else b""
                            seen.add(key)
                            yield Item(wanted[key], data=data)
                except (OSError, tarfile.TarError) as exc:
                    logger.warning("%s: cannot read the rest of the shard: %s", tar, exc)
                for key, index in wanted.items():
                    if key not in seen:  # counted as unreadable: name it in the report
                        yield Item(index, path=f"{tar}/{key}.png")
            return
        if not isinstance(self.root, Path):     # a store: the bytes of each image object
            loc = open_location(self.root)
            for index, name in enumerate(self.names):
                yield Item(index, data=loc.read_bytes(name))
            return
        for index, name in enumerate(self.names):
            yield Item(index, path=str(self.root / name))


def _stays_in(root: Path, path: Path) -> bool:
    """``path`` (links resolved) lies inside ``root``: a link out of the dataset is never followed."""
    try:
        inside(root, path)
    except FacegenError:
        return False
    return True


def image_files(folder: Path) -> list[Path]:
    """The images under ``folder`` (``rglob`` never enters a linked folder; a linked *file* is read
    through the image door, which refuses anything but an image)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def open_dataset(root: str | Path) -> DatasetSource:
    """A facegen dataset (``spec.yaml`` present; a folder or a store URL) or an ImageFolder of identities."""
    from facegen.dataset.stats import SPEC_FILE

    loc = open_location(root)
    if not isinstance(loc, LocalLocation):
        if not loc.exists(SPEC_FILE):
            raise InvalidArgumentError(f"{loc} holds no facegen dataset (no {SPEC_FILE}); an ImageFolder tree is "
                                       "read from a local folder")
        return _open_facegen(loc)
    root = loc.path
    if not root.exists():
        raise InvalidArgumentError(f"{root}: no such folder")
    if not root.is_dir():
        raise InvalidArgumentError(f"{root} is not a folder: give a dataset folder (facegen's, or one "
                                   "folder per identity)")
    if (root / SPEC_FILE).is_file():
        return _open_facegen(loc)
    return _open_imagefolder(root)


def _names_inside(root: Any, rel: Any) -> bool:
    """A record's file ``rel`` lies inside the dataset ``root`` (a folder: links resolved; a store:
    a relative key without ``..``)."""
    if not isinstance(rel, str) or not rel:
        return False
    if isinstance(root, Path):
        return _stays_in(root, root / rel)
    key = PurePosixPath(rel)
    return not key.is_absolute() and ".." not in key.parts


def _open_facegen(loc: Location) -> DatasetSource:
    from facegen.dataset.spec import DatasetSpec
    from facegen.dataset.stats import spec_file_of

    spec_file = spec_file_of(loc)
    assert spec_file is not None
    spec = DatasetSpec.from_yaml(spec_file, out=loc.url)
    root: Any = loc.path if isinstance(loc, LocalLocation) else loc
    records: list[dict[str, Any]] = []
    unfinished = 0
    damaged: list[str] = []
    listing = loc.listing()
    # finished = its file listing (written last) exists; a damaged file in a finished shard is
    # counted as an unreadable image, not a reason to leave the whole shard out
    finished = [k for k in range(spec.num_shards) if W.files_name(k) in listing and W.part_name(k) in listing]
    unfinished = spec.num_shards - len(finished)
    for k, part in zip(finished, loc.read_many([W.part_name(k) for k in finished])):
        records.extend(W.parse_jsonl(part))
        problem = W.shard_problem(loc, k, spec.format, checksums=False, listing=listing)
        if problem is not None:
            damaged.append(f"{W.shard_name(k)} ({problem})")
    where = "shard" if spec.format == "webdataset" else "file"
    kept = [r for r in records if _names_inside(root, r.get(where))]
    if len(kept) < len(records):
        damaged.append(f"{len(records) - len(kept)} record(s) naming no {where} or one outside the dataset")
        records = kept
    if not records:
        raise InvalidArgumentError(f"{root} is a facegen dataset with no finished shard yet: rerun its "
                                   "'facegen dataset' command to finish it")
    ids = sorted({int(r["identity"]) for r in records})
    label_of = {ident: n for n, ident in enumerate(ids)}
    names = [r["key"] if spec.format == "webdataset" else r["file"] for r in records]
    source = DatasetSource(root, "facegen", spec.format, [f"{i:06d}" for i in ids],
                           np.array([label_of[int(r["identity"])] for r in records], dtype=np.int64),
                           names, spec=spec)
    if unfinished:
        source.warnings.append(f"{unfinished} of {spec.num_shards} shards are unfinished: the report covers "
                               "the finished ones")
    if damaged:
        source.warnings.append(f"{len(damaged)} finished shard(s) have damaged files: {', '.join(damaged[:5])}"
                               + (" ..." if len(damaged) > 5 else "") + "; rerun 'facegen dataset' to repair them")
    if spec.format == "webdataset":
        by_shard: dict[str, dict[str, int]] = {}
        for index, r in enumerate(records):
            by_shard.setdefault(r["shard"], {})[r["key"]] = index
        source._shards = list(by_shard.items())
    return source


def _open_imagefolder(root: Path) -> DatasetSource:
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    outside = sorted(p.name for p in entries if not _stays_in(root, p))   # a link to / is not walked
    subdirs = sorted(p for p in entries if p.name not in outside
                     and not (p / REPORT_JSON).is_file())        # a report written into the dataset
    top_images = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not subdirs:
        if top_images:
            raise InvalidArgumentError(
                f"{root} holds images but no identity sub-folders: an ImageFolder dataset keeps one folder "
                f"per identity ({root}/<identity>/<image>)")
        raise InvalidArgumentError(f"{root} is empty: no identity sub-folders with images")
    identities: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    empty: list[str] = []
    for sub in subdirs:
        files = image_files(sub)
        if not files:
            empty.append(sub.name)
            continue
        label = len(identities)
        identities.append(sub.name)
        for f in files:
            labels.append(label)
            names.append(str(f.relative_to(root)))
    if not names:
        raise InvalidArgumentError(
            f"{root} has {len(subdirs)} sub-folder(s) but no images in them "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    source = DatasetSource(root, "imagefolder", "imagefolder", identities, np.array(labels, dtype=np.int64), names)
    if empty:
        source.warnings.append(f"{len(empty)} sub-folder(s) without images left out: {', '.join(empty[:10])}"
                               + (" ..." if len(empty) > 10 else ""))
    if top_images:
        source.warnings.append(f"{len(top_images)} image(s) directly in {root} (outside identity folders) "
                               "left out")
    if outside:
        source.warnings.append(f"{len(outside)} sub-folder link(s) leading out of {root} left out: "
                               + ", ".join(outside[:10]))
    return source


def encoder_spec_of(name: str):
    from facegen.id.registry import get_encoder_spec

    return get_encoder_spec(name)
