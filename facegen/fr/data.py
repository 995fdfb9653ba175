"""Training data for ``fr-train``: facegen's WebDataset or ImageFolder output, or any ImageFolder of
identity folders, streamed in a deterministic order.

Every epoch is one fixed sequence of samples, a function of (seed, epoch) only: ImageFolder
files in a seeded permutation; WebDataset shards (read with the ``webdataset`` package) in a
seeded shard order through a seeded shuffle buffer.  Sample ``p`` of an epoch goes to global
batch ``p // B``; a process takes its slice of every global batch and a loader worker its share
of the batches, and each sample's augmentation has its own seed (seed, epoch, p).  So the
batches do not depend on the number of workers or processes, and a resumed run skips exactly
the batches it had done.

Images: a facegen dataset's aligned 112×112 crops when it has them; other images already
112×112 are taken as aligned crops; anything else is aligned once through the face front door
(:func:`prepare_aligned`) with the ArcFace template the evaluation uses.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

CROP = 112
SHUFFLE_BUFFER = 2000


@dataclass
class TrainSet:
    """What one epoch streams: items (file paths, or (tar, key, member) for WebDataset shards,
    or decoded arrays for in-memory data) with identity labels 0..num_classes-1."""

    root: str
    format: str                                  # "imagefolder" | "webdataset" | "memory"
    items: list[Any]
    labels: np.ndarray
    num_classes: int
    skipped_identities: int = 0
    fingerprint: str | None = None
    notes: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)      # webdataset: shard paths
    member: str = "png"                                    # webdataset: the member read per sample
    aligned: bool = False                                  # every image is an aligned 112 crop already

    def __len__(self) -> int:
        return len(self.items)


def _drop_singletons(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(kept sample mask, new labels of kept samples, number of classes, identities skipped)."""
    ids, counts = np.unique(labels, return_counts=True)
    keep_ids = ids[counts >= 2]
    remap = {int(i): n for n, i in enumerate(keep_ids)}
    mask = np.isin(labels, keep_ids)
    new = np.array([remap[int(v)] for v in labels[mask]], dtype=np.int64)
    return mask, new, len(keep_ids), int((counts < 2).sum())


def open_train_set(root: str | Path) -> TrainSet:
    """The training samples of a dataset folder (identities with one image skipped and counted)."""
    from facegen.dataset import writers as W  # noqa: PLC0415
    from facegen.dataset.report_source import open_dataset  # noqa: PLC0415

    source = open_dataset(root)
    labels = source.labels
    mask, new, num_classes, skipped = _drop_singletons(labels)
    if num_classes < 2:
        raise InvalidArgumentError(
            f"{root}: {num_classes} identit{'y' if num_classes == 1 else 'ies'} with two or more images; "
            "training face recognition needs at least two (one folder per identity, several images each)")
    notes = list(source.warnings)
    if skipped:
        notes.append(f"{skipped} identit{'y' if skipped == 1 else 'ies'} with a single image skipped")
    fingerprint = None
    if source.kind == "facegen":
        from facegen.dataset.stats import dataset_stats  # noqa: PLC0415
        fingerprint = dataset_stats(source.root).fingerprint
    crops = bool(getattr(source.spec, "crops", False))
    if source.format == "webdataset":
        from facegen.io.location import open_location  # noqa: PLC0415

        loc = open_location(source.root)          # shards are named relative to the dataset's location
        index_shard: dict[int, tuple[str, str]] = {}
        for tar, wanted in source._shards:
            local = str(loc.local_file(tar))      # a store's shard is fetched once
            for key, index in wanted.items():
                index_shard[index] = (local, key)
        kept = [i for i in range(len(source)) if mask[i]]
        items = [index_shard[i] for i in kept]
        return TrainSet(str(source.root), "webdataset", items, new, num_classes, skipped, fingerprint, notes,
                        shards=sorted({t for t, _ in items}), member="crop112.png" if crops else "png",
                        aligned=crops)
    paths = []
    for i, name in enumerate(source.names):
        if not mask[i]:
            continue
        p = Path(source.root) / name
        if crops and name.startswith(W.IMAGES_DIR + "/"):
            c = Path(source.root) / (W.CROPS_DIR + name[len(W.IMAGES_DIR):])
            p = c if c.is_file() else p
        paths.append(str(p))
    return TrainSet(str(source.root), "imagefolder", paths, new, num_classes, skipped, fingerprint, notes,
                    aligned=crops)


def memory_train_set(images: np.ndarray, labels: np.ndarray) -> TrainSet:
    """A training set of aligned RGB crops held in memory ((N, H, W, 3) uint8)."""
    mask, new, num_classes, skipped = _drop_singletons(np.asarray(labels))
    if num_classes < 2:
        raise InvalidArgumentError("training needs at least two identities with two or more images")
    return TrainSet("<memory>", "memory", [images[i] for i in np.flatnonzero(mask)], new, num_classes, skipped,
                    aligned=True)


# ---------------------------------------------------------------------- the epoch's sequence
def epoch_order(ts: TrainSet, seed: int, epoch: int) -> Iterator[tuple[Any, int]]:
    """(item payload, label) of every sample of one epoch, in that epoch's fixed order."""
    rng = np.random.default_rng([seed, epoch, 17])
    if ts.format != "webdataset":
        for i in rng.permutation(len(ts)):
            yield ts.items[i], int(ts.labels[i])
        return
    yield from _webdataset_order(ts, rng)


def _webdataset_order(ts: TrainSet, rng: np.random.Generator) -> Iterator[tuple[Any, int]]:
    try:
        import webdataset as wds  # noqa: PLC0415
    except ImportError:
        from facegen.errors import MissingDependencyError  # noqa: PLC0415
        raise MissingDependencyError("webdataset", "fr", "training on WebDataset shards") from None
    label_of = {(t, k): int(lab) for (t, k), lab in zip(ts.items, ts.labels)}
    buffer: list[tuple[Any, int]] = []
    shards = [ts.shards[i] for i in rng.permutation(len(ts.shards))]
    for shard in shards:
        stream = wds.WebDataset(shard, shardshuffle=False, nodesplitter=_all, workersplitter=_all,
                                empty_check=False, handler=wds.warn_and_continue)
        for sample in stream:
            lab = label_of.get((shard, sample["__key__"]))
            if lab is None:
                continue
            buffer.append((sample.get(ts.member, b""), lab))
            if len(buffer) >= SHUFFLE_BUFFER:
                yield buffer.pop(int(rng.integers(len(buffer))))
    while buffer:
        yield buffer.pop(int(rng.integers(len(buffer))))


def _all(x: Any) -> Any:
    return x


def steps_per_epoch(ts: TrainSet, batch_size: int) -> int:
    n = len(ts) // batch_size
    if n < 1:
        raise InvalidArgumentError(f"{ts.root}: {len(ts)} usable images, fewer than one batch of {batch_size}; "
                                   "lower --batch-size or add images")
    return n


# ---------------------------------------------------------------------- one sample
def load_crop(payload: Any, size: int) -> np.ndarray | None:
    """An aligned RGB crop (``size``²) of a path, encoded bytes or an array; None if unreadable."""
    from facegen.errors import BadImageError  # noqa: PLC0415
    from facegen.io.images import load_image  # noqa: PLC0415

    try:
        rgb = payload if isinstance(payload, np.ndarray) else load_image(payload)
    except (BadImageError, InvalidArgumentError):
        return None
    if rgb.shape[0] != size or rgb.shape[1] != size:
        from PIL import Image  # noqa: PLC0415
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
    return rgb


def augment(rgb: np.ndarray, names: tuple[str, ...], p: float, rng: np.random.Generator,
            extra: dict[str, Any] | None = None) -> np.ndarray:
    """The recipe's augmentations of one crop (PIL/numpy; every draw from ``rng``)."""
    from PIL import Image, ImageEnhance, ImageOps  # noqa: PLC0415

    size = rgb.shape[0]
    im = None
    if "crop" in names and rng.random() < p:                  # AdaFace: random crop, resized back
        s = rng.uniform(0.6, 1.0)
        w = max(8, int(size * s))
        x, y = (int(v) for v in rng.integers(0, size - w + 1, size=2))
        im = Image.fromarray(rgb).crop((x, y, x + w, y + w)).resize((size, size), Image.BILINEAR)
    if "lowres" in names and rng.random() < p:                # AdaFace: low resolution
        im = im or Image.fromarray(rgb)
        w = max(8, int(size * rng.uniform(0.2, 1.0)))
        im = im.resize((w, w), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    if "photometric" in names and rng.random() < p:           # AdaFace: brightness, contrast, saturation
        im = im or Image.fromarray(rgb)
        for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            im = enh(im).enhance(float(rng.uniform(0.5, 1.5)))
    if "randaugment" in names:                                # IDiff-Face: RandAugment(N, M)
        im = im or Image.fromarray(rgb)
        n = int((extra or {}).get("randaugment_ops", 2))
        m = float((extra or {}).get("randaugment_magnitude", 9)) / 30.0
        ops = ("rotate", "shear", "translate", "brightness", "contrast", "sharpness", "equalize",
               "autocontrast", "posterize", "solarize", "color", "identity")
        for k in rng.choice(len(ops), size=n):
            op, sign = ops[int(k)], (1 if rng.random() < 0.5 else -1)
            if op == "rotate":
                im = im.rotate(sign * 30 * m, fillcolor=(128, 128, 128))
            elif op == "shear":
                im = im.transform(im.size, Image.AFFINE, (1, sign * 0.3 * m, 0, 0, 1, 0), fillcolor=(128, 128, 128))
            elif op == "translate":
                im = im.transform(im.size, Image.AFFINE, (1, 0, sign * 0.45 * m * size, 0, 1, 0),
                                  fillcolor=(128, 128, 128))
            elif op in ("brightness", "contrast", "sharpness", "color"):
                enh = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
                       "sharpness": ImageEnhance.Sharpness, "color": ImageEnhance.Color}[op]
                im = enh(im).enhance(1 + sign * 0.9 * m)
            elif op == "equalize":
                im = ImageOps.equalize(im)
            elif op == "autocontrast":
                im = ImageOps.autocontrast(im)
            elif op == "posterize":
                im = ImageOps.posterize(im, max(1, 8 - int(4 * m)))
            elif op == "solarize":
                im = ImageOps.solarize(im, int(256 - 256 * m))
    out = np.asarray(im) if im is not None else rgb
    if "flip" in names and rng.random() < 0.5:
        out = out[:, ::-1]
    if "erase" in names and rng.random() < p:                  # random erasing (Zhong et al.)
        out = out.copy()
        area = size * size * rng.uniform(0.02, 0.33)
        ratio = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
        h = min(size, int(round(np.sqrt(area * ratio))))
        w = min(size, int(round(np.sqrt(area / ratio))))
        y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        out[y:y + h, x:x + w] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------- batches
def make_batches(ts: TrainSet, *, batch_size: int, image_size: int, augment_names: tuple[str, ...],
                 augment_p: float, seed: int, epoch: int, start_batch: int = 0, rank: int = 0, world: int = 1,
                 extra: dict[str, Any] | None = None) -> Any:
    """A torch ``IterableDataset`` of this process's ``(images NCHW float, labels, unreadable)``
    for the global batches ``start_batch..`` of ``epoch`` (drop-last); images are (x − 127.5) / 127.5."""
    import torch  # noqa: PLC0415

    per_proc = batch_size // world
    steps = steps_per_epoch(ts, batch_size)

    class _Batches(torch.utils.data.IterableDataset):
        def __iter__(self) -> Iterator[tuple[Any, Any, int]]:
            info = torch.utils.data.get_worker_info()
            wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
            imgs: list[np.ndarray] = []
            labs: list[int] = []
            bad = 0
            lo, hi = rank * per_proc, (rank + 1) * per_proc
            for p, (payload, lab) in enumerate(epoch_order(ts, seed, epoch)):
                b, slot = divmod(p, batch_size)
                if b >= steps:
                    break
                if b < start_batch or (b - start_batch) % nw != wid or not lo <= slot < hi:
                    continue
                crop = load_crop(payload, image_size)          # the aligned crop at the network's size
                if crop is None:
                    bad += 1
                else:
                    rng = np.random.default_rng([seed, epoch, p])
                    imgs.append(augment(crop, augment_names, augment_p, rng, extra))
                    labs.append(lab)
                if slot == hi - 1:
                    if imgs:
                        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().sub_(127.5).div_(127.5)
                        yield x, torch.tensor(labs, dtype=torch.long), bad
                    imgs, labs, bad = [], [], 0

    return _Batches()


def prepare_aligned(ts: TrainSet, cache: Path, progress: bool = False) -> TrainSet:
    """A set whose images are not all aligned crops, aligned once through the face front door
    (dlib detector, the evaluation's ArcFace 112 template) into ``cache`` (ImageFolder of PNGs);
    images where no face is found are left out and counted."""
    from facegen.errors import BadImageError  # noqa: PLC0415
    from facegen.faces.align import warp_face  # noqa: PLC0415
    from facegen.faces.detect import detect_faces, select_faces  # noqa: PLC0415
    from facegen.io.atomic import atomic_write_bytes  # noqa: PLC0415
    from facegen.io.images import load_image  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    if ts.aligned:
        return ts
    items, labels, missed = [], [], 0
    it = list(epoch_order(TrainSet(ts.root, ts.format, ts.items, ts.labels, ts.num_classes, shards=ts.shards,
                                   member=ts.member), 0, 0)) if ts.format == "webdataset" else \
        list(zip(ts.items, ts.labels.tolist()))
    needs = False
    for n, (payload, lab) in enumerate(it):
        out = cache / f"{lab:06d}" / f"{n:07d}.png"
        if out.is_file():
            items.append(str(out))
            labels.append(lab)
            continue
        try:
            rgb = load_image(payload)
        except BadImageError:
            missed += 1
            continue
        if rgb.shape[:2] == (CROP, CROP):
            items.append(payload if not isinstance(payload, bytes) else _store(out, rgb))
            labels.append(lab)
            continue
        needs = True
        faces = detect_faces(rgb)
        if not faces:
            missed += 1
            continue
        crop, _ = warp_face(rgb, select_faces(faces, "largest")[0].kps, CROP, "arcface")
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, format="PNG")
        atomic_write_bytes(out, buf.getvalue())
        items.append(str(out))
        labels.append(lab)
    if needs or missed:
        logger.info("aligned %d images into %s (%d without a usable face)", len(items), cache, missed)
    new = TrainSet(ts.root, "imagefolder", items, np.array(labels, dtype=np.int64), ts.num_classes,
                   ts.skipped_identities, ts.fingerprint, list(ts.notes), aligned=True)
    if missed:
        new.notes.append(f"{missed} image(s) unreadable or without a face left out")
    return new


def _store(out: Path, rgb: np.ndarray) -> str:
    from facegen.io.atomic import atomic_write_bytes  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    return str(out)
