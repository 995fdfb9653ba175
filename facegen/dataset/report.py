"""``facegen dataset-report``: what a face-recognition dataset is worth, measured by a judge.

Reads a facegen dataset (WebDataset shards or ImageFolder, with its manifest and spec) or any
ImageFolder face dataset (``DIR/<identity>/<image>``: other generators' releases, real sets),
streams its images in batches through an ID encoder (the *judge*, independent of the
generator's encoder: :func:`facegen.metrics.choose_judge`) in worker processes, and measures:

- **faces**: the face found rate; images per identity (balance); unreadable images (counted
  and listed, never fatal);
- **verification**: genuine similarities (all pairs of one identity's images, sampled past
  :data:`MAX_GENUINE_PAIRS_PER_IDENTITY`) and impostor similarities (pairs across identities,
  all of them or a seeded sample of ``max_impostor_pairs``); the accuracy at the judge's
  same-person threshold is *balanced*, ``(true-accept rate + true-reject rate) / 2``, so the
  many impostor pairs do not swamp it (LFW-style protocols use equal numbers); the EER;
- **separability**: each identity's nearest other identity by centroid similarity; the pairs
  of identities closer than the same-person threshold; ``unique_identities`` (no other
  centroid at or above that threshold) and Vec2Face's count (no other centroid with cosine
  above 0.4; for dlib, whose vectors are not centred, on centroids centred at their mean);
- **variation** within identities: the spread (standard deviation, averaged over identities)
  of head pose (:mod:`facegen.faces.headpose`), of brightness and sharpness of the aligned
  112 px face crop, and of the genuine similarities; near-duplicates within an identity
  (average hash within ``dedup_hash_distance`` bits, or judge similarity >= ``dedup_similarity``,
  the dataset filters' rules);
- **leakage** against ``reference`` (real people's embeddings, or a folder of their photos):
  each identity's nearest real person and similarity, and the identities at or above the
  same-person threshold;
- for facegen datasets, the rejection counts of the run and the spec's settings.

Similarities are in the judge's own metric (``facegen.id.encoders.similarity``): cosine for
ArcFace networks, ``1 - Euclidean distance`` for the dlib descriptor.  Centroids are means of
unit vectors (cosine) or of raw vectors (Euclidean).

Outputs (``out``, default ``DIR/report``): ``report.json`` (the schema in the README; a
contract for scripts), ``report.md``, PNG plots (:mod:`facegen.dataset.report_plots`) and
``images.jsonl`` (one line per image: identity, face found, pose, brightness, sharpness,
error).  A facegen dataset's card (``DIR/README.md``) is refreshed with the figures.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tarfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegen.dataset import writers as W
from facegen.errors import BadImageError, EncoderMismatchError, FacegenError, InvalidArgumentError

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
_FULL_MATRIX_MAX = 3000        # up to this many faces, impostor pairs come from the full matrix
_CROP = 112


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

    root: Path
    kind: str                              # "facegen" | "imagefolder"
    format: str                            # "webdataset" | "imagefolder"
    identities: list[str]                  # identity names, label order
    labels: np.ndarray                     # (N,) identity label of each image
    names: list[str]                       # (N,) image name: relative path or sample key
    warnings: list[str] = field(default_factory=list)
    spec: Any = None                       # DatasetSpec of a facegen dataset
    _shards: list[tuple[Path, dict[str, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def iter_items(self) -> Iterator[Item]:
        """Every image once, streaming (WebDataset shards are read member by member)."""
        if self.format == "webdataset":
            for tar, wanted in self._shards:
                seen = set()
                try:
                    with tarfile.open(tar, "r|") as tf:
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
                        yield Item(index, path=str(tar / f"{key}.png"))
            return
        for index, name in enumerate(self.names):
            yield Item(index, path=str(self.root / name))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def open_dataset(root: str | Path) -> DatasetSource:
    """A facegen dataset (``spec.yaml`` present) or an ImageFolder of identities."""
    root = Path(root)
    if not root.exists():
        raise InvalidArgumentError(f"{root}: no such folder")
    if not root.is_dir():
        raise InvalidArgumentError(f"{root} is not a folder: give a dataset folder (facegen's, or one "
                                   "folder per identity)")
    from facegen.dataset.stats import SPEC_FILE

    if (root / SPEC_FILE).is_file():
        return _open_facegen(root)
    return _open_imagefolder(root)


def _open_facegen(root: Path) -> DatasetSource:
    from facegen.dataset.spec import DatasetSpec
    from facegen.dataset.stats import SPEC_FILE

    spec = DatasetSpec.from_yaml(root / SPEC_FILE, out=root)
    records: list[dict[str, Any]] = []
    unfinished = 0
    damaged: list[str] = []
    for k in range(spec.num_shards):
        # finished = its file listing (written last) exists; a damaged file in a finished shard is
        # counted as an unreadable image, not a reason to leave the whole shard out
        if not (W.files_path(root, k).is_file() and W.part_path(root, k).is_file()):
            unfinished += 1
            continue
        records.extend(W.read_jsonl(W.part_path(root, k)))
        problem = W.shard_problem(root, k, spec.format, checksums=False)
        if problem is not None:
            damaged.append(f"{W.shard_name(k)} ({problem})")
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
        source._shards = [(root / shard, wanted) for shard, wanted in by_shard.items()]
    return source


def _open_imagefolder(root: Path) -> DatasetSource:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
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
        files = _image_files(sub)
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
    return source


# ---------------------------------------------------------------------- per-image analysis
@dataclass
class ImageResult:
    index: int
    error: str | None = None
    vector: np.ndarray | None = None
    pose: tuple[float, float, float] | None = None
    brightness: float | None = None
    sharpness: float | None = None
    ahash: bytes | None = None


def _ahash_bytes(rgb: np.ndarray) -> bytes:
    from facegen.dataset.filters import average_hash

    return average_hash(rgb).to_bytes(32, "big")


class ImageAnalyzer:
    """Measures a batch of images: the judge's embedding of the largest face (through the
    encoders' batched path, :meth:`EncoderEmbedFn.embed_many`), head pose, brightness and
    sharpness of the aligned crop, and the average hash.  Picklable: the encoder loads in the
    process that first calls it."""

    def __init__(self, encoder: str, models_dir: str | None = None, accept_license: bool = False) -> None:
        from facegen.dataset.filters import EncoderEmbedFn

        self.encoder = encoder
        self.embed = EncoderEmbedFn(encoder, models_dir, accept_license)

    def __call__(self, items: Sequence[Item]) -> list[ImageResult]:
        import cv2

        from facegen.faces.align import warp_face
        from facegen.faces.headpose import head_pose
        from facegen.io import load_image

        results: list[ImageResult] = []
        rgbs: list[np.ndarray] = []
        for it in items:
            try:
                rgb = load_image(it.data if it.data is not None else it.path)
            except BadImageError as exc:
                results.append(ImageResult(it.index, error=str(exc)))
                continue
            results.append(ImageResult(it.index, ahash=_ahash_bytes(rgb)))
            rgbs.append(rgb)
        embs = iter(self.embed.embed_many(rgbs) if rgbs else [])
        read = iter(rgbs)
        for res in results:
            if res.error is not None:
                continue
            rgb, emb = next(read), next(embs)
            if emb is None:
                continue
            res.vector = emb.vector
            face = emb.face
            if face is None:
                continue
            res.pose = head_pose(face, rgb.shape)
            crop, _ = warp_face(rgb, face.kps, _CROP, "arcface")
            grey = cv2.cvtColor(np.ascontiguousarray(crop, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
            res.brightness = float(grey.mean())
            res.sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
        return results


_WORKER_ANALYZER: ImageAnalyzer | None = None  # set in worker processes only


def _init_worker(analyzer: ImageAnalyzer) -> None:
    global _WORKER_ANALYZER
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core: no thread oversubscription
    except ImportError:  # pragma: no cover - a core dependency
        pass
    _WORKER_ANALYZER = analyzer


def _worker_analyse(items: list[Item]) -> list[ImageResult]:
    assert _WORKER_ANALYZER is not None, "worker not initialised"
    return _WORKER_ANALYZER(items)


@dataclass
class Measurements:
    """What the analysis measured on every image of a source (NaN: not measured)."""

    vectors: np.ndarray          # (N, dim) float32
    pose: np.ndarray             # (N, 3) yaw, pitch, roll
    brightness: np.ndarray       # (N,)
    sharpness: np.ndarray        # (N,)
    ahash: np.ndarray            # (N, 32) uint8
    readable: np.ndarray         # (N,) bool
    errors: dict[int, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int, dim: int) -> Measurements:
        return cls(np.full((n, dim), np.nan, np.float32), np.full((n, 3), np.nan), np.full(n, np.nan),
                   np.full(n, np.nan), np.zeros((n, 32), np.uint8), np.zeros(n, bool))

    @property
    def found(self) -> np.ndarray:
        return np.all(np.isfinite(self.vectors), axis=1)

    def add(self, r: ImageResult) -> None:
        if r.error is not None:
            self.errors[r.index] = r.error
            return
        self.readable[r.index] = True
        if r.ahash is not None:
            self.ahash[r.index] = np.frombuffer(r.ahash, np.uint8)
        if r.vector is not None:
            if r.vector.shape[0] != self.vectors.shape[1]:
                raise FacegenError(f"the judge returned {r.vector.shape[0]}-D vectors, its registry entry "
                                   f"says {self.vectors.shape[1]}")
            self.vectors[r.index] = r.vector
        if r.pose is not None:
            self.pose[r.index] = r.pose
        if r.brightness is not None:
            self.brightness[r.index] = r.brightness
            self.sharpness[r.index] = r.sharpness


def default_workers(n_images: int, batch_size: int) -> int:
    """One worker per core, but no more than there are batches to share (small datasets run
    in this process: starting a worker costs more than a few images)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    batches = -(-n_images // batch_size)
    return max(1, min(cores, batches // 2))


def analyse(items: Iterator[Item], total: int, analyzer: ImageAnalyzer, dim: int, workers: int = 1,
            batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True, desc: str = "report") -> Measurements:
    """Run ``analyzer`` over ``items`` in batches (``workers`` spawned processes, at most two
    batches each in flight, so a large dataset streams through bounded memory)."""
    from tqdm.auto import tqdm

    m = Measurements.empty(total, dim)

    def batches() -> Iterator[list[Item]]:
        batch: list[Item] = []
        for it in items:
            batch.append(it)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    with tqdm(total=total, unit="img", desc=desc, disable=not progress, smoothing=0.1) as bar:
        if workers <= 1:
            for batch in batches():
                for r in analyzer(batch):
                    m.add(r)
                bar.update(len(batch))
            return m
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(analyzer,)) as pool:
            pending: set[Future] = set()

            def drain(block_until: int) -> None:
                nonlocal pending
                while len(pending) > block_until:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        res = fut.result()
                        for r in res:
                            m.add(r)
                        bar.update(len(res))

            for batch in batches():
                pending.add(pool.submit(_worker_analyse, batch))
                drain(2 * workers)
            drain(0)
    return m


# ---------------------------------------------------------------------- reference (leakage)
@dataclass
class Reference:
    """Real people's embeddings by one encoder: one row per embedding, ``names`` grouping rows
    into people (a person's centroid is compared)."""

    encoder: str
    vectors: np.ndarray
    names: list[str]
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def people(self) -> list[str]:
        return list(dict.fromkeys(self.names))


def save_reference(path: str | Path, vectors: np.ndarray, encoder: str, names: Sequence[str] | None = None) -> Path:
    """Write real embeddings for ``--reference``: an ``.npz`` with ``embeddings`` (m, dim),
    ``encoder`` (its registry name) and ``names`` (one per row; rows of one name are one person)."""
    import io

    vectors = np.asarray(vectors, dtype=np.float32)
    names = [str(n) for n in (names if names is not None else (f"ref{i}" for i in range(len(vectors))))]
    buf = io.BytesIO()
    np.savez(buf, embeddings=vectors, encoder=np.array(encoder), names=np.array(names))
    path = Path(path)
    W.atomic_write_bytes(path, buf.getvalue())
    return path


def _reference_from_arrays(path: Path, vectors: Any, encoder: Any, names: Any) -> Reference:
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.number):
        raise InvalidArgumentError(f"{path}: the reference embeddings must be a numeric (m, dim) array, "
                                   f"got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError(f"{path}: the reference embeddings hold NaN or infinite values")
    if encoder is None or not str(encoder):
        raise InvalidArgumentError(
            f"{path} does not record the encoder of its embeddings: save an .npz with 'embeddings' and "
            f"'encoder' (facegen.dataset.report.save_reference), or put {{\"encoder\": NAME}} in "
            f"{path.with_suffix('.json').name} beside it")
    n = [str(v) for v in names] if names is not None else [f"ref{i}" for i in range(len(x))]
    if len(n) != len(x):
        raise InvalidArgumentError(f"{path}: {len(n)} names for {len(x)} reference embeddings")
    return Reference(str(encoder), x.astype(np.float32), n, str(path))


def load_reference(path: str | Path, analyzer: ImageAnalyzer | None = None, workers: int = 1,
                   batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False) -> Reference:
    """Real people to check leakage against: an ``.npz`` (:func:`save_reference`), an ``.npy``
    with a ``.json`` beside it (``{"encoder": NAME, "names": [...]}``), or a folder of photos
    (one folder per person, or one photo per person), embedded now with ``analyzer``."""
    p = Path(path)
    if not p.exists():
        raise InvalidArgumentError(f"reference not found: {p}")
    if p.is_dir():
        if analyzer is None:
            raise InvalidArgumentError("a reference folder of photos needs an encoder to embed them")
        return _reference_from_photos(p, analyzer, workers, batch_size, progress)
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError) as exc:
            raise InvalidArgumentError(f"{p} is not a readable .npz of embeddings: {exc}") from None
        if "embeddings" not in arrays:
            raise InvalidArgumentError(f"{p} has no 'embeddings' array (found: {', '.join(arrays) or 'none'})")
        return _reference_from_arrays(p, arrays["embeddings"], arrays.get("encoder"), arrays.get("names"))
    if p.suffix == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InvalidArgumentError(f"{p} is not a plain .npy array of embeddings: {exc}") from None
        meta: dict[str, Any] = {}
        side = p.with_suffix(".json")
        if side.is_file():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InvalidArgumentError(f"{side} is not valid JSON: {exc}") from None
        return _reference_from_arrays(p, x, meta.get("encoder"), meta.get("names"))
    raise InvalidArgumentError(f"--reference takes an .npz or .npy of embeddings or a folder of photos, got {p}")


def _reference_from_photos(root: Path, analyzer: ImageAnalyzer, workers: int, batch_size: int,
                           progress: bool) -> Reference:
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[tuple[str, Path]] = []
    for d in subdirs:
        files.extend((d.name, f) for f in _image_files(d))
    files.extend((f.stem, f) for f in sorted(root.iterdir())
                 if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InvalidArgumentError(f"reference folder {root} holds no photos")
    items = (Item(i, path=str(f)) for i, (_, f) in enumerate(files))
    dim = _encoder_spec(analyzer.encoder).dim
    m = analyse(items, len(files), analyzer, dim, workers=workers, batch_size=batch_size, progress=progress,
                desc="reference")
    found = m.found
    ref = Reference(analyzer.encoder, m.vectors[found], [files[i][0] for i in np.flatnonzero(found)], str(root))
    missing = [str(files[i][1].relative_to(root)) for i in np.flatnonzero(~found)]
    if missing:
        ref.warnings.append(f"{len(missing)} reference photo(s) without a usable face left out: "
                            + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if not len(ref.vectors):
        raise InvalidArgumentError(f"no face found in the reference photos of {root}")
    return ref


def check_reference(ref: Reference, encoder: str, dim: int) -> None:
    """The reference must come from the judge's encoder and have its dimension."""
    if ref.encoder != encoder:
        raise EncoderMismatchError(
            f"the reference {ref.source} was embedded with '{ref.encoder}' but the report judges with "
            f"'{encoder}': pass --encoder {ref.encoder}, or a reference embedded with {encoder}")
    if ref.vectors.shape[1] != dim:
        raise InvalidArgumentError(f"the reference {ref.source} holds {ref.vectors.shape[1]}-D embeddings; "
                                   f"encoder '{encoder}' makes {dim}-D ones")


# ---------------------------------------------------------------------- metrics (pure numpy)
def _encoder_spec(name: str):
    from facegen.id.registry import get_encoder_spec

    return get_encoder_spec(name)


def describe(values: Any) -> dict[str, Any]:
    """``{count, mean, std, p05, p50, p95}`` of the finite values (None when there are none)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"count": 0, "mean": None, "std": None, "p05": None, "p50": None, "p95": None}
    p05, p50, p95 = np.percentile(x, [5, 50, 95])
    return {"count": int(x.size), "mean": _r(x.mean()), "std": _r(x.std()), "p05": _r(p05), "p50": _r(p50),
            "p95": _r(p95)}


def _r(v: Any, nd: int = 4) -> float | None:
    if v is None:
        return None
    v = float(v)
    return round(v, nd) if math.isfinite(v) else None


def pair_similarity(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Similarity of row ``i`` of ``a`` with row ``i`` of ``b``, in the encoder's metric."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if metric == "cosine":
        na = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
        nb = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
        return (a * b).sum(1) / (na * nb)
    return 1.0 - np.linalg.norm(a - b, axis=1)


def verification(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict[str, Any]:
    """Balanced accuracy at ``threshold`` (same person when similarity >= threshold) and EER."""
    g = np.sort(np.asarray(genuine, np.float64))
    i = np.sort(np.asarray(impostor, np.float64))
    out: dict[str, Any] = {"accuracy": None, "eer": None, "threshold": threshold, "tar": None, "far": None,
                           "eer_threshold": None, "genuine_pairs": int(g.size), "impostor_pairs": int(i.size)}
    if not g.size or not i.size:
        return out
    tar = float(np.mean(g >= threshold))
    far = float(np.mean(i >= threshold))
    # the ROC at every distinct score (ascending thresholds: FRR rises, FAR falls); the EER is
    # where FRR - FAR crosses zero, linearly interpolated between the two ROC points around it
    ts = np.concatenate([np.unique(np.concatenate([g, i])), [np.inf]])
    frr = np.searchsorted(g, ts, side="left") / g.size          # genuine below t
    fars = 1.0 - np.searchsorted(i, ts, side="left") / i.size    # impostors at or above t
    d = frr - fars
    k = int(np.argmax(d >= 0))                                  # d[-1] = 1: always found
    if k == 0:
        eer = (fars[0] + frr[0]) / 2
    else:
        a = -d[k - 1] / (d[k] - d[k - 1])
        eer = fars[k - 1] + a * (fars[k] - fars[k - 1])
    out.update(accuracy=_r((tar + 1.0 - far) / 2), tar=_r(tar), far=_r(far), eer=_r(eer),
               eer_threshold=_r(ts[k]) if np.isfinite(ts[k]) else None)
    return out


def centroids(vectors: np.ndarray, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(identity labels having faces, their centroids): means of unit rows for cosine, of raw
    rows for Euclidean."""
    x = np.asarray(vectors, np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    ids, inv = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(ids), x.shape[1]))
    np.add.at(sums, inv, x)
    counts = np.bincount(inv, minlength=len(ids)).astype(np.float64)
    return ids, sums / counts[:, None]


def _nearest(a: np.ndarray, b: np.ndarray, metric: str, exclude_self: bool, threshold: float | None = None,
             chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, float]], int]:
    """Per row of ``a``: index and similarity of the most similar row of ``b``; plus up to
    :data:`MAX_LISTED` pairs (i < j when ``exclude_self``) at or above ``threshold`` and their count."""
    from facegen.dataset.stats import similarity_matrix

    best = np.full(len(a), -1, np.int64)
    best_s = np.full(len(a), -np.inf)
    pairs: list[tuple[int, int, float]] = []
    count = 0
    for start in range(0, len(a), chunk):
        s = similarity_matrix(a[start:start + chunk], b, metric)
        rows = np.arange(s.shape[0])
        if exclude_self:
            s[rows, start + rows] = -np.inf
        if s.shape[1]:
            best[start:start + len(s)] = s.argmax(1)
            best_s[start:start + len(s)] = s[rows, best[start:start + len(s)]]
        if threshold is not None:
            ii, jj = np.nonzero(s >= threshold)
            if exclude_self:
                keep = start + ii < jj
                ii, jj = ii[keep], jj[keep]
            count += len(ii)
            if len(pairs) < MAX_LISTED:
                pairs.extend((int(start + x), int(y), float(s[x, y])) for x, y in zip(ii, jj))
    pairs.sort(key=lambda p: -p[2])
    return best, best_s, pairs[:MAX_LISTED], count


def _impostor_pairs(labels: np.ndarray, n_max: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Index pairs (i, j) of different identities: all of them when there are at most
    ``n_max``, else ``n_max`` drawn uniformly (with replacement) by ``rng``."""
    n = len(labels)
    counts = np.bincount(labels)
    total = (n * n - int((counts.astype(np.int64) ** 2).sum())) // 2
    if total == 0 or n_max <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), False
    if total <= n_max and n <= _FULL_MATRIX_MAX:
        ii, jj = np.triu_indices(n, k=1)
        keep = labels[ii] != labels[jj]
        return ii[keep], jj[keep], False
    got_i: list[np.ndarray] = []
    got_j: list[np.ndarray] = []
    have = 0
    while have < n_max:
        draw = int((n_max - have) * 1.3) + 16
        i = rng.integers(0, n, draw)
        j = rng.integers(0, n, draw)
        keep = labels[i] != labels[j]
        got_i.append(i[keep])
        got_j.append(j[keep])
        have += int(keep.sum())
    return np.concatenate(got_i)[:n_max], np.concatenate(got_j)[:n_max], True


def _hamming(bits: np.ndarray) -> np.ndarray:
    b = np.unpackbits(bits, axis=1).astype(np.int32)
    return b @ (1 - b).T + (1 - b) @ b.T


def compute_metrics(source: DatasetSource, m: Measurements, encoder: str, reference: Reference | None = None,
                    max_impostor_pairs: int = DEFAULT_MAX_IMPOSTOR_PAIRS, seed: int = 0,
                    dedup_hash_distance: int = 12, dedup_similarity: float = 0.95) -> dict[str, Any]:
    """Every figure of the report from the per-image measurements (see the module docstring)."""
    from facegen.dataset.stats import similarity_matrix

    spec = _encoder_spec(encoder)
    metric, thr = spec.metric, float(spec.threshold)
    labels = source.labels
    n_ids = len(source.identities)
    found = m.found
    readable = m.readable
    n_read = int(readable.sum())
    rng = np.random.default_rng(seed)

    per_id = np.bincount(labels, minlength=n_ids)
    faces_per_id = np.bincount(labels[found], minlength=n_ids)
    images_per_identity = {**describe(per_id), "min": int(per_id.min()), "max": int(per_id.max())}

    # genuine pairs, per-identity spreads and near-duplicates: one pass over identities
    genuine: list[np.ndarray] = []
    genuine_std: list[float] = []
    pose_std: list[np.ndarray] = []
    bright_std: list[float] = []
    sharp_std: list[float] = []
    dup_pairs: list[list[Any]] = []
    dup_count = 0
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_ids + 1))
    for ident in range(n_ids):
        members = order[bounds[ident]:bounds[ident + 1]]
        members = members[readable[members]]
        faces = members[found[members]]
        k = len(faces)
        sims = None
        if k >= 2:
            sims = similarity_matrix(m.vectors[faces], m.vectors[faces], metric)
            iu = np.triu_indices(k, k=1)
            vals = sims[iu]
            if vals.size > MAX_GENUINE_PAIRS_PER_IDENTITY:
                vals = rng.choice(vals, MAX_GENUINE_PAIRS_PER_IDENTITY, replace=False)
            genuine.append(vals)
            if vals.size >= 2:
                genuine_std.append(float(vals.std()))
            pose = m.pose[faces]
            ok = np.all(np.isfinite(pose), axis=1)
            if ok.sum() >= 2:
                pose_std.append(pose[ok].std(axis=0))
            for arr, dst in ((m.brightness, bright_std), (m.sharpness, sharp_std)):
                v = arr[faces]
                v = v[np.isfinite(v)]
                if v.size >= 2:
                    dst.append(float(v.std()))
        if len(members) >= 2:                       # near-duplicates, faces or not
            ham = _hamming(m.ahash[members])
            close = ham <= dedup_hash_distance
            sim_full = None
            if sims is not None:                    # the judge's similarity between members with faces
                at = np.searchsorted(faces, members)
                has = found[members]
                sim_full = np.full((len(members), len(members)), -np.inf)
                sim_full[np.ix_(has, has)] = sims[np.ix_(at[has], at[has])]
                close |= sim_full >= dedup_similarity
            ii, jj = np.nonzero(np.triu(close, k=1))
            dup_count += len(ii)
            for a, b in zip(ii, jj):
                if len(dup_pairs) >= MAX_LISTED:
                    break
                s = None if sim_full is None or not np.isfinite(sim_full[a, b]) else _r(sim_full[a, b])
                dup_pairs.append([source.identities[ident], source.names[members[a]], source.names[members[b]],
                                  int(ham[a, b]), s])
    gen = np.concatenate(genuine) if genuine else np.zeros(0)

    # impostor pairs
    face_idx = np.flatnonzero(found)
    ii, jj, sampled = _impostor_pairs(labels[face_idx], max_impostor_pairs, rng)
    imp = pair_similarity(m.vectors[face_idx[ii]], m.vectors[face_idx[jj]], metric) if len(ii) else np.zeros(0)

    # separability of identity centroids
    cids, cents = centroids(m.vectors[face_idx], labels[face_idx], metric) if len(face_idx) else \
        (np.zeros(0, np.int64), np.zeros((0, spec.dim)))
    sep: dict[str, Any] = {"nearest_other_mean": None, "identities_too_close": [], "too_close_pairs": 0,
                           "too_close_fraction": None, "unique_identities": None,
                           "vec2face_unique_identities": None,
                           "vec2face_rule": {"max_cosine": VEC2FACE_MAX_COSINE, "centred": metric != "cosine"},
                           "identities_with_faces": int(len(cids)), "nearest_other": {}}
    nearest_sims = np.zeros(0)
    if len(cids) >= 2:
        best, best_s, close_pairs, n_close = _nearest(cents, cents, metric, exclude_self=True, threshold=thr)
        nearest_sims = best_s
        names = [source.identities[c] for c in cids]
        sep["nearest_other_mean"] = _r(best_s.mean())
        sep["nearest_other"] = {names[a]: [names[int(best[a])], _r(best_s[a])] for a in range(len(cids))}
        sep["identities_too_close"] = [[names[a], names[b], _r(s)] for a, b, s in close_pairs]
        sep["too_close_pairs"] = int(n_close)
        sep["too_close_fraction"] = _r(np.mean(best_s >= thr))
        sep["unique_identities"] = int(np.sum(best_s < thr))
        unit = cents - cents.mean(axis=0) if metric != "cosine" else cents
        _, v2f, _, _ = _nearest(unit, unit, "cosine", exclude_self=True)
        sep["vec2face_unique_identities"] = int(np.sum(v2f <= VEC2FACE_MAX_COSINE))
    elif len(cids) == 1:
        sep.update(unique_identities=1, vec2face_unique_identities=1, too_close_fraction=0.0)

    # variation
    ps = np.array(pose_std) if pose_std else np.full((0, 3), np.nan)
    variation = {
        "yaw_std": _r(ps[:, 0].mean(), 2) if len(ps) else None,
        "pitch_std": _r(ps[:, 1].mean(), 2) if len(ps) else None,
        "roll_std": _r(ps[:, 2].mean(), 2) if len(ps) else None,
        "brightness_std": _r(np.mean(bright_std), 2) if bright_std else None,
        "sharpness_std": _r(np.mean(sharp_std), 2) if sharp_std else None,
        "genuine_std": _r(np.mean(genuine_std)) if genuine_std else None,
        "identities_measured": int(len(ps)),
        "yaw": describe(m.pose[:, 0]), "pitch": describe(m.pose[:, 1]), "roll": describe(m.pose[:, 2]),
        "brightness": describe(m.brightness), "sharpness": describe(m.sharpness),
    }

    # leakage
    leakage = None
    if reference is not None:
        people = reference.people
        pid = {p: n for n, p in enumerate(people)}
        _, rcents = centroids(reference.vectors, np.array([pid[n] for n in reference.names]), metric)
        leakage = {"reference": reference.source, "reference_count": len(people),
                   "reference_embeddings": int(len(reference.vectors)), "threshold": thr, "flagged": [],
                   "nearest": {}}
        if len(cids):
            best, best_s, _, _ = _nearest(cents, rcents, metric, exclude_self=False)
            names = [source.identities[c] for c in cids]
            leakage["nearest"] = {names[a]: {"reference": people[int(best[a])], "similarity": _r(best_s[a])}
                                  for a in range(len(cids))}
            leakage["flagged"] = [names[a] for a in np.argsort(-best_s, kind="stable") if best_s[a] >= thr]

    unreadable = sorted(m.errors)
    return {
        "identities": n_ids,
        "images": len(source),
        "encoder": encoder,
        "metric": metric,
        "threshold": thr,
        "face_found_rate": _r(found.sum() / n_read) if n_read else None,
        "faces_found": int(found.sum()),
        "identities_without_faces": int(np.sum(faces_per_id == 0)),
        "unreadable": {"count": len(unreadable),
                       "files": [[source.names[i], m.errors[i]] for i in unreadable[:MAX_LISTED]]},
        "images_per_identity": images_per_identity,
        "genuine": describe(gen),
        "impostor": {**describe(imp), "sampled": bool(sampled)},
        "verification": verification(gen, imp, thr),
        "separability": sep,
        "variation": variation,
        "leakage": leakage,
        "duplicates": {"count": int(dup_count), "hash_distance": dedup_hash_distance,
                       "similarity": dedup_similarity, "pairs": dup_pairs},
        # raw series for the plots (not written to report.json)
        "_series": {"genuine": gen, "impostor": imp, "nearest": nearest_sims, "pose": m.pose[found],
                    "per_identity": per_id},
    }


# ---------------------------------------------------------------------- the report
def _facegen_section(source: DatasetSource) -> dict[str, Any] | None:
    if source.kind != "facegen":
        return None
    from facegen.dataset.stats import dataset_stats

    summary = dataset_stats(source.root)
    spec = source.spec
    return {"model": spec.model, "fingerprint": summary.fingerprint, "seed": spec.seed, "format": spec.format,
            "num_ids": spec.num_ids, "images_per_id": spec.images_per_id, "expected": summary.expected,
            "accepted": summary.accepted, "generated": summary.generated, "rejected": summary.rejected,
            "rejected_by_reason": dict(sorted(summary.rejected_by_reason.items())), "dropped": summary.dropped,
            "filters": spec.filters, "filter_encoder": spec.filter_encoder,
            "conditioning_encoder": spec.conditioning_encoder(),
            "spec": {k: v for k, v in spec.to_dict().items()
                     if k not in ("out", "models_dir", "accept_license", "engine", "workers", "batch_size")}}


def choose_report_encoder(source: DatasetSource, encoder: str | None, models_dir: str | None,
                          accept_license: bool) -> str:
    """The judge: ``encoder`` if given, else an installed encoder independent of the one that
    conditioned a facegen dataset's generation."""
    if encoder:
        _encoder_spec(encoder)                       # unknown name: one-line error
        return encoder
    from facegen.metrics import choose_judge

    exclude = source.spec.conditioning_encoder() if source.spec is not None else None
    return choose_judge(exclude=exclude, models_dir=models_dir, accept_license=accept_license)


@dataclass
class Report:
    data: dict[str, Any]
    out: Path
    markdown: str

    @property
    def json_path(self) -> Path:
        return self.out / REPORT_JSON

    @property
    def md_path(self) -> Path:
        return self.out / REPORT_MD


def build_report(root: str | Path, reference: str | Path | None = None, encoder: str | None = None,
                 out: str | Path | None = None, workers: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_impostor_pairs: int = DEFAULT_MAX_IMPOSTOR_PAIRS, seed: int = 0, progress: bool = True,
                 plots: bool = True, card: bool = True, models_dir: str | None = None,
                 accept_license: bool = False) -> Report:
    """Measure the dataset in ``root`` and write ``report.json``, ``report.md``, the plots and
    ``images.jsonl`` into ``out`` (default ``root/report``); refresh a facegen dataset's card."""
    from facegen import __version__

    t0 = time.perf_counter()
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise InvalidArgumentError(f"workers must be >= 1, got {workers}")
    source = open_dataset(root)
    judge = choose_report_encoder(source, encoder, models_dir, accept_license)
    spec = _encoder_spec(judge)
    analyzer = ImageAnalyzer(judge, models_dir, accept_license)
    from facegen.id.encoders import get_encoder

    get_encoder(judge, models_dir, accept_license=accept_license)  # fail now (weights, licence), not in a worker
    n_workers = workers or default_workers(len(source), batch_size)
    warnings = list(source.warnings)
    ref = None
    if reference is not None:
        ref = load_reference(reference, analyzer, workers=1, batch_size=batch_size, progress=False)
        check_reference(ref, judge, spec.dim)
        warnings.extend(ref.warnings)
    logger.info("report on %s: %d images, %d identities, judge %s, %d worker(s)", source.root, len(source),
                len(source.identities), judge, n_workers)
    t_measure = time.perf_counter()
    m = analyse(source.iter_items(), len(source), analyzer, spec.dim, workers=n_workers, batch_size=batch_size,
                progress=progress)
    measure_seconds = time.perf_counter() - t_measure
    dedup = {}
    if source.spec is not None:
        dedup = {"dedup_hash_distance": source.spec.dedup_hash_distance,
                 "dedup_similarity": source.spec.dedup_similarity}
    data = compute_metrics(source, m, judge, ref, max_impostor_pairs=max_impostor_pairs, seed=seed, **dedup)
    series = data.pop("_series")
    fg = _facegen_section(source)
    conditioning = fg["conditioning_encoder"] if fg else None
    if conditioning is not None and conditioning == judge:
        warnings.append(f"the judge '{judge}' is the encoder that conditioned this dataset's generation: the "
                        "figures grade the generator on its own exam")
    if data["faces_found"] == 0:
        tiny = " (a tiny preset draws noise, not faces)" if source.spec is not None and source.spec.is_tiny() else ""
        warnings.append(f"no face found in any of the {data['images']} images{tiny}: similarity, separability, "
                        "pose and leakage figures need faces")
    elif data["face_found_rate"] is not None and data["face_found_rate"] < 1.0:
        missing = int(m.readable.sum()) - data["faces_found"]
        warnings.append(f"faces not found in {missing} of {int(m.readable.sum())} readable images")
    if data["unreadable"]["count"]:
        warnings.append(f"{data['unreadable']['count']} unreadable image(s) counted and left out "
                        "(listed under unreadable)")
    out_dir = Path(out) if out is not None else source.root / REPORT_DIR
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "facegen_version": __version__,
        "dataset": {"path": str(source.root), "kind": source.kind, "format": source.format},
        **data,
        "judge_independent": None if conditioning is None else conditioning != judge,
        "conditioning_encoder": conditioning,
        "facegen": fg,
        "warnings": warnings,
        "plots": [],
        "timing": {"seconds": None, "measure_seconds": _r(measure_seconds, 3),
                   "images_per_second": _r(len(source) / measure_seconds, 3) if measure_seconds > 0 else None,
                   "workers": n_workers, "batch_size": batch_size},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        from facegen.dataset.report_plots import make_plots

        report["plots"] = make_plots(report, series, out_dir)
    report["timing"]["seconds"] = _r(time.perf_counter() - t0, 3)
    md = render_markdown(report)
    W.atomic_write_bytes(out_dir / REPORT_JSON, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    W.atomic_write_bytes(out_dir / REPORT_MD, md.encode("utf-8"))
    W.atomic_write_bytes(out_dir / IMAGES_JSONL, _images_jsonl(source, m))
    if card and source.kind == "facegen":
        from facegen.dataset.card import write_dataset_card

        write_dataset_card(source.root, report=report, report_dir=out_dir)
    for w in warnings:
        logger.warning("%s", w)
    return Report(report, out_dir, md)


def _images_jsonl(source: DatasetSource, m: Measurements) -> bytes:
    lines = []
    found = m.found
    for i, name in enumerate(source.names):
        rec: dict[str, Any] = {"image": name, "identity": source.identities[int(source.labels[i])],
                               "face": bool(found[i])}
        if i in m.errors:
            rec["error"] = m.errors[i]
        if found[i]:
            rec.update(yaw=_r(m.pose[i, 0], 2), pitch=_r(m.pose[i, 1], 2), roll=_r(m.pose[i, 2], 2),
                       brightness=_r(m.brightness[i], 2), sharpness=_r(m.sharpness[i], 2))
        lines.append(json.dumps(rec, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


# ---------------------------------------------------------------------- Markdown
def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _stat(s: dict[str, Any], nd: int = 3) -> str:
    if not s.get("count"):
        return "n/a (no pairs)"
    return f"{_f(s['mean'], nd)} ± {_f(s['std'], nd)} (p05 {_f(s['p05'], nd)}, p95 {_f(s['p95'], nd)}; n={s['count']})"


def metric_label(metric: str, threshold: float) -> str:
    return f"cosine ≥ {threshold:g}" if metric == "cosine" else f"1 − Euclidean ≥ {threshold:g}"


def headline(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's main figures as (measure, value) rows (the Markdown table, the card)."""
    r = report
    thr = r["threshold"]
    ipi = r["images_per_identity"]
    sep = r["separability"]
    var = r["variation"]
    ver = r["verification"]
    readable = r["images"] - r["unreadable"]["count"]
    rate = r["face_found_rate"]
    rows = [
        ("identities / images", f"{r['identities']} / {r['images']}"),
        ("faces found", f"{r['faces_found']} of {readable} readable images"
                        + (f" ({100 * rate:.1f} %)" if rate is not None else "")),
        ("images per identity", f"{_f(ipi['mean'], 1)} ± {_f(ipi['std'], 1)} (min {ipi['min']}, max {ipi['max']})"),
        ("genuine similarity", _stat(r["genuine"])),
        ("impostor similarity", _stat(r["impostor"]) + (" (sampled)" if r["impostor"].get("sampled") else "")),
        (f"verification accuracy at {thr:g} (balanced)",
         "n/a" if ver["accuracy"] is None else f"{ver['accuracy']:.3f} (EER {ver['eer']:.3f})"),
        ("nearest other identity (centroids)", f"mean {_f(sep['nearest_other_mean'])}"),
        (f"identity pairs too close (≥ {thr:g})", f"{sep['too_close_pairs']}"
         + (f" ({100 * sep['too_close_fraction']:.1f} % of identities)" if sep["too_close_fraction"] is not None else "")),
        (f"unique identities (nearest other < {thr:g})",
         "n/a" if sep["unique_identities"] is None else f"{sep['unique_identities']} of {sep['identities_with_faces']}"),
        (f"unique identities, Vec2Face rule (no other with cosine > {VEC2FACE_MAX_COSINE:g}"
         + (", centred" if sep["vec2face_rule"]["centred"] else "") + ")",
         "n/a" if sep["vec2face_unique_identities"] is None
         else f"{sep['vec2face_unique_identities']} of {sep['identities_with_faces']}"),
        ("pose spread within identities (yaw / pitch / roll std)",
         "n/a" if var["yaw_std"] is None
         else f"{var['yaw_std']:.1f}° / {var['pitch_std']:.1f}° / {var['roll_std']:.1f}°"),
        ("brightness / sharpness spread within identities",
         f"{_f(var['brightness_std'], 1)} / {_f(var['sharpness_std'], 1)}"),
        ("genuine similarity spread within identities", _f(var["genuine_std"])),
        ("near-duplicates within an identity", str(r["duplicates"]["count"])),
    ]
    lk = r["leakage"]
    if lk is None:
        rows.append(("leakage vs real people", "not checked (no --reference)"))
    else:
        flagged = lk["flagged"]
        rows.append((f"leakage vs {lk['reference_count']} real people (≥ {thr:g})",
                     f"{len(flagged)} identities flagged" + (f": {', '.join(flagged[:10])}" if flagged else "")
                     + (" ..." if len(flagged) > 10 else "")))
    if r["unreadable"]["count"]:
        rows.append(("unreadable images", str(r["unreadable"]["count"])))
    fg = r.get("facegen")
    if fg:
        reasons = ", ".join(f"{k} {v}" for k, v in fg["rejected_by_reason"].items() if v) or "none"
        rows.append(("rejected during generation", f"{fg['rejected']} ({reasons}); {fg['dropped']} dropped"))
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    r = report
    name = Path(r["dataset"]["path"]).name or r["dataset"]["path"]
    judge = f"{r['encoder']} ({metric_label(r['metric'], r['threshold'])} = same person)"
    indep = {True: "independent of the generator's encoder", False: "NOT independent of the generator's encoder",
             None: "not a facegen dataset: the generator's encoder is unknown"}[r["judge_independent"]]
    lines = [f"# Dataset report: {name}", "",
             f"{r['dataset']['kind']} dataset ({r['dataset']['format']}) · judge {judge} · {indep}", ""]
    if r["warnings"]:
        lines += [f"> **Note:** {w}" for w in r["warnings"]] + [""]
    lines += ["| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in headline(r)]
    lines.append("")
    if r["plots"]:
        lines += ["## Figures", ""] + [f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in r["plots"]] + [""]
    sep = r["separability"]
    if sep["identities_too_close"]:
        lines += [f"## Identities closer than the same-person threshold ({sep['too_close_pairs']} pairs)", "",
                  "| identity | identity | similarity |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {s:.3f} |" for a, b, s in sep["identities_too_close"][:50]] + [""]
    lk = r["leakage"]
    if lk is not None:
        lines += [f"## Leakage against {lk['reference_count']} real people ({lk['reference']})", ""]
        if lk["nearest"]:
            lines += ["| identity | nearest real person | similarity | flagged |", "|---|---|---|---|"]
            ranked = sorted(lk["nearest"].items(), key=lambda kv: -(kv[1]["similarity"] or -9))
            lines += [f"| {k} | {v['reference']} | {v['similarity']:.3f} | {'yes' if k in lk['flagged'] else ''} |"
                      for k, v in ranked[:50]] + [""]
        else:
            lines += ["No identity has a face to compare.", ""]
    dup = r["duplicates"]
    if dup["pairs"]:
        lines += [f"## Near-duplicates ({dup['count']})", "", "| identity | image | image | hash distance | similarity |",
                  "|---|---|---|---|---|"]
        lines += [f"| {i} | {a} | {b} | {h} | {_f(s)} |" for i, a, b, h, s in dup["pairs"][:50]] + [""]
    if r["unreadable"]["count"]:
        lines += [f"## Unreadable images ({r['unreadable']['count']})", ""]
        lines += [f"- `{f}`: {e}" for f, e in r["unreadable"]["files"][:50]] + [""]
    fg = r.get("facegen")
    if fg:
        lines += ["## Generation (facegen)", "",
                  f"model `{fg['model']}`, seed {fg['seed']}, fingerprint `{fg['fingerprint']}`; "
                  f"{fg['accepted']}/{fg['expected']} images written from {fg['generated']} generated; "
                  f"filters {'on (judge ' + str(fg['filter_encoder']) + ')' if fg['filters'] else 'off'}; "
                  f"rejected: {json.dumps(fg['rejected_by_reason'])}, dropped {fg['dropped']}.", ""]
    t = r["timing"]
    lines += [f"Measured in {_f(t['seconds'], 1)} s ({_f(t['images_per_second'], 2)} images/s, {t['workers']} "
              f"worker(s)) by facegen {r['facegen_version']}. Figures: `report.json`; per image: `images.jsonl`.", ""]
    return "\n".join(lines)
