"""The work on one shard: generate its identities' images, filter and regenerate them, write
the shard (its manifest part last).

Every image's seed and perturbed embedding derive from (run seed, identity, image index,
attempt) (:mod:`facegen.dataset.variation`), and a generator makes an item's pixels from the
item alone, so a shard's files are the same whichever engine, worker or batch size made them
(up to the float rounding of batched GPU kernels, :mod:`facegen.dataset.generate`).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegen.dataset import writers as W
from facegen.dataset.filters import EmbedFn, FaceFn, FilterChain, ImageScores, QualityFn, build_filter_chain
from facegen.dataset.spec import DatasetSpec
from facegen.dataset.stats import IDENTITIES_FILE
from facegen.dataset.variation import VariationConfig, WorkItem, embedding_sha256, make_work_item
from facegen.errors import FacegenError
from facegen.io.storage import Location
from facegen.io.location import open_location

logger = logging.getLogger(__name__)

GenerateFn = Callable[[list[WorkItem]], list[np.ndarray]]
AlignFn = Callable[[np.ndarray], "np.ndarray | None"]


@dataclass
class ShardResult:
    shard: int
    accepted: int = 0
    generated: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    seconds: float = 0.0


@dataclass
class RunContext:
    """What a worker needs to process shards (picklable when its callables are)."""

    spec: DatasetSpec                 # resolved
    fingerprint: str
    generate_fn: GenerateFn
    embed_fn: EmbedFn | None = None
    face_fn: FaceFn | None = None
    quality_fn: QualityFn | None = None
    align_fn: AlignFn | None = None

    def __post_init__(self) -> None:
        self._identities: np.ndarray | None = None
        self._root: Location | None = None
        self._chain: FilterChain | None = None
        self._chain_built = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_identities=None, _root=None, _chain=None, _chain_built=False)
        return state

    @property
    def root(self) -> Location:
        if self._root is None:
            self._root = open_location(self.spec.out)
        return self._root

    @property
    def identities(self) -> np.ndarray:
        if self._identities is None:
            # memory-mapped: worker processes share the pages of a large identity file (on a store:
            # of this process's one download of it)
            self._identities = np.load(self.root.local_file(IDENTITIES_FILE), mmap_mode="r", allow_pickle=False)
        return self._identities

    @property
    def chain(self) -> FilterChain | None:
        if not self._chain_built:
            self._chain = build_filter_chain(self.spec, embed_fn=self.embed_fn, face_fn=self.face_fn,
                                             quality_fn=self.quality_fn)
            self._chain_built = True
        return self._chain


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _generate(ctx: RunContext, items: list[WorkItem]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for batch in _batches(items, ctx.spec.batch_size):
        images = list(ctx.generate_fn(list(batch)))
        if len(images) != len(batch):
            raise FacegenError(f"generate_fn returned {len(images)} images for {len(batch)} items")
        for item, rgb in zip(batch, images):
            rgb = np.asarray(rgb)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise FacegenError(f"generate_fn must return RGB uint8 (H, W, 3) arrays; item {item.key} "
                                   f"got {rgb.dtype} {rgb.shape}")
            out.append(rgb)
    return out


def _score_many(ctx: RunContext, rgbs: Sequence[np.ndarray]) -> list[ImageScores]:
    """Filter scores of a batch of generated images (embedded in one call where possible)."""
    if ctx.chain is not None:
        return ctx.chain.score_many(rgbs)
    if ctx.embed_fn is None:
        return [ImageScores() for _ in rgbs]
    many = getattr(ctx.embed_fn, "embed_many", None)
    embs = many(list(rgbs)) if many is not None else [ctx.embed_fn(rgb) for rgb in rgbs]
    return [ImageScores(embedding=e) for e in embs]


def _finalise_identities(ctx: RunContext, identities: Sequence[int], result: ShardResult
                         ) -> dict[int, dict[int, tuple[WorkItem, np.ndarray, ImageScores]]]:
    """Generate, filter and regenerate the images of a few identities until every image
    passed or used its ``max_attempts`` tries."""
    spec = ctx.spec
    cfg = VariationConfig(spec.noise_levels, spec.noise_shares, spec.prompts, spec.poses)
    k = spec.images_per_id
    accepted: dict[int, dict[int, tuple[WorkItem, np.ndarray, ImageScores]]] = {i: {} for i in identities}
    pending = [make_work_item(spec.seed, i, j, ctx.identities[i], k, cfg, attempt=0)
               for i in identities for j in range(k)]
    while pending:
        images = _generate(ctx, pending)
        result.generated += len(pending)
        scored = list(zip(pending, images, _score_many(ctx, images)))
        retry: list[WorkItem] = []
        by_identity: dict[int, list[tuple[WorkItem, np.ndarray, ImageScores]]] = collections.defaultdict(list)
        for entry in scored:
            by_identity[entry[0].identity].append(entry)
        for ident in sorted(by_identity):
            group = by_identity[ident]
            chain = ctx.chain
            verdict: dict[int, str | None] = (
                chain.decide({j: e[2] for j, e in accepted[ident].items()}, {e[0].index: e[2] for e in group})
                if chain is not None else {e[0].index: None for e in group})
            for item, rgb, scores in group:
                reason = verdict[item.index]
                if reason is None:
                    accepted[ident][item.index] = (item, rgb, scores)
                    continue
                result.rejected[reason] = result.rejected.get(reason, 0) + 1
                if item.attempt + 1 < spec.max_attempts:
                    retry.append(make_work_item(spec.seed, ident, item.index, ctx.identities[ident], k, cfg,
                                                attempt=item.attempt + 1))
                else:
                    result.dropped += 1
                    logger.info("image %s dropped after %d attempts (last: %s)", item.key, spec.max_attempts, reason)
        pending = retry
    return accepted


def _provenance(ctx: RunContext, item: WorkItem) -> dict[str, Any]:
    return {"model": ctx.spec.model, "seed": item.seed, "identity": item.identity, "index": item.index,
            "attempt": item.attempt, "dataset": ctx.fingerprint}


def process_shard(ctx: RunContext, shard: int, on_images: Callable[[int], None] | None = None) -> ShardResult:
    """Generate, filter and write one shard; its manifest part is written last."""
    t0 = time.perf_counter()
    spec, root = ctx.spec, ctx.root
    W.clean_shard_temps(root, shard)
    root.delete(W.files_name(shard))   # redoing a damaged shard: not done until rewritten
    result = ShardResult(shard)
    records: list[dict[str, Any]] = []
    embeddings: list[np.ndarray | None] = []
    judge: str | None = None
    ids = list(spec.shard_identities(shard))
    # identities finished together: about four generator batches of work at a time
    per_chunk = max(1, -(-4 * spec.batch_size // spec.images_per_id))
    writer = W.ShardWriter(root, shard, spec.format)
    device = getattr(ctx.generate_fn, "device", None)      # the generator's (None: CUDA when available)
    try:
        for chunk in _batches(ids, per_chunk):
            done = _finalise_identities(ctx, chunk, result)
            entries = [(ident, index, *done[ident][index]) for ident in chunk for index in sorted(done[ident])]
            metas = [_provenance(ctx, item) for _, _, item, _, _ in entries]
            # the chunk's images marked in one call on the pipeline's device (then their crops)
            pngs = W.encode_pngs([(rgb, meta, "image.png") for (_, _, _, rgb, _), meta in zip(entries, metas)],
                                 spec.provenance, device)
            crops: list[np.ndarray | None] = [None] * len(entries)
            if spec.crops and ctx.align_fn is not None:
                crops = [ctx.align_fn(rgb) for _, _, _, rgb, _ in entries]
            with_crop = [j for j, c in enumerate(crops) if c is not None]
            crop_pngs = dict(zip(with_crop, W.encode_pngs(
                [(np.ascontiguousarray(crops[j], dtype=np.uint8), {**metas[j], "crop": "arcface112"}, "image.png")
                 for j in with_crop], spec.provenance, device) if with_crop else []))
            for j, (ident, index, item, rgb, scores) in enumerate(entries):
                crop_png = crop_pngs.get(j)
                crop_ref = None
                if crop_png is not None:
                    crop_ref = (W.image_relpath(ident, index, crop=True) if spec.format == "imagefolder"
                                else f"{item.key}.crop112.png")
                record: dict[str, Any] = {
                    "key": item.key, "identity": ident, "index": index, "attempt": item.attempt,
                    "seed": item.seed, "noise_level": item.noise_level,
                    "embedding_sha256": embedding_sha256(item.embedding),
                    "identity_sha256": embedding_sha256(ctx.identities[ident]),
                    "prompt": item.prompt, "pose": item.pose,
                    "scores": scores.to_dict() if ctx.chain is not None else None,
                    "crop": crop_ref,
                }
                writer.add(item.key, ident, index, pngs[j], record, crop_png)
                records.append({**record, **writer.location(ident, index)})
                emb = scores.embedding
                if emb is not None:
                    judge = emb.encoder
                embeddings.append(None if emb is None else emb.vector)
                result.accepted += 1
            if on_images is not None:
                for ident in chunk:
                    on_images(len(done[ident]))
        published = writer.commit()
    except BaseException:
        writer.abort()
        raise
    emb_matrix = None
    dim = next((e.shape[0] for e in embeddings if e is not None), 0)
    if dim:
        emb_matrix = np.stack([e if e is not None else np.full(dim, np.nan, np.float32) for e in embeddings])
    stats = {"shard": shard, "identities": [ids[0], ids[-1] + 1] if ids else [], "accepted": result.accepted,
             "generated": result.generated, "rejected": dict(sorted(result.rejected.items())),
             "dropped": result.dropped, "embedding_encoder": judge}
    W.write_part(root, shard, records, stats, emb_matrix, fmt=spec.format, published=published)
    result.seconds = time.perf_counter() - t0
    return result

