"""Per-image analysis for the report (judge embeddings, pose, brightness, sharpness, hashes), in
worker processes, and the leakage reference."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import BadImageError, EncoderMismatchError, FacegenError, InvalidArgumentError
from facegen.io.arrays import load_npy, load_npz
from facegen.io.files import Opt, read_json
from facegen.dataset.report_source import DEFAULT_BATCH_SIZE, IMAGE_EXTENSIONS, CROP, Item, encoder_spec_of, image_files
from facegen.io.atomic import atomic_write_bytes
from facegen.paths import DEFAULT_ACCESS, ModelAccess

logger = logging.getLogger(__name__)


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

    def __init__(self, encoder: str, access: ModelAccess = DEFAULT_ACCESS) -> None:
        from facegen.dataset.filters import EncoderEmbedFn

        self.encoder = encoder
        self.embed = EncoderEmbedFn(encoder, access)

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
            crop, _ = warp_face(rgb, face.kps, CROP, "arcface")
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
    atomic_write_bytes(path, buf.getvalue())
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
    # regular files only, header and inflated sizes checked before allocation (facegen.io.files)
    if p.suffix == ".npz":
        arrays = load_npz(p, what="--reference", error=InvalidArgumentError)
        if "embeddings" not in arrays:
            raise InvalidArgumentError(f"{p} has no 'embeddings' array (found: {', '.join(arrays) or 'none'})")
        return _reference_from_arrays(p, arrays["embeddings"], arrays.get("encoder"), arrays.get("names"))
    if p.suffix == ".npy":
        x = load_npy(p, what="--reference", error=InvalidArgumentError)
        meta: dict[str, Any] = {}
        side = p.with_suffix(".json")
        if side.exists() or side.is_symlink():
            meta = read_json(side, what="--reference sidecar", error=InvalidArgumentError,
                             schema={"encoder": Opt(str), "names": Opt([str])})
        return _reference_from_arrays(p, x, meta.get("encoder"), meta.get("names"))
    raise InvalidArgumentError(f"--reference takes an .npz or .npy of embeddings or a folder of photos, got {p}")


def _reference_from_photos(root: Path, analyzer: ImageAnalyzer, workers: int, batch_size: int,
                           progress: bool) -> Reference:
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[tuple[str, Path]] = []
    for d in subdirs:
        files.extend((d.name, f) for f in image_files(d))
    files.extend((f.stem, f) for f in sorted(root.iterdir())
                 if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InvalidArgumentError(f"reference folder {root} holds no photos")
    items = (Item(i, path=str(f)) for i, (_, f) in enumerate(files))
    dim = encoder_spec_of(analyzer.encoder).dim
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
