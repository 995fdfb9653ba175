"""Dataset summaries: counts, and identity separation measured by an independent encoder.

``mean_intra_similarity``: per identity, the mean similarity between its images (all
pairs), averaged over identities.  ``max_inter_similarity``: the largest similarity between
two identities' mean embeddings.  Both in the judging encoder's own metric (cosine for
ArcFace networks, ``1 - Euclidean distance`` for dlib).  ``identity_max_cosine`` is the
largest cosine between the sampled identity vectors (the conditioning space).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegen.dataset import writers as W
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.io.arrays import load_npy, parse_npy
from facegen.io.files import AnyKey, Opt, parse_json
from facegen.io.location import LocalLocation, open_location
from facegen.io.storage import Location

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
#: what a shard's statistics must hold to be summed (a hand-edited file is one error, not a crash)
STATS_SHAPE = {"rejected": Opt(AnyKey(int)), "dropped": Opt(int), "generated": Opt(int),
               "embedding_encoder": Opt((str, type(None)))}
IDENTITIES_FILE = "identities.npy"
SPEC_FILE = "spec.yaml"
_MAX_IDS_FOR_PAIRWISE = 20000


@dataclass
class Summary:
    out: str
    model: str
    format: str
    num_ids: int
    images_per_id: int
    expected: int
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    generated: int = 0
    shards: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    shards_redone: int = 0          # finished shards found damaged and made again by this run
    seconds: float | None = None
    images_per_second: float | None = None
    filters: bool = False
    filter_encoder: str | None = None
    judge: str | None = None
    mean_intra_similarity: float | None = None
    max_inter_similarity: float | None = None
    identity_max_cosine: float | None = None
    fingerprint: str = ""
    #: why the similarities are missing (None when measured)
    similarity_note: str | None = None

    @property
    def complete(self) -> bool:
        return self.shards_done == self.shards

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_text(self) -> str:
        def f(v: float | None, nd: int = 3) -> str:
            return "n/a" if v is None else f"{v:.{nd}f}"

        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected_by_reason.items()) if v) or "none"
        skipped = f" ({self.shards_skipped} already done before this run)" if self.shards_skipped else ""
        if self.shards_redone:
            skipped += f" ({self.shards_redone} found damaged and redone)"
        judge = f"on (judge {self.filter_encoder})" if self.filters else "off"
        lines = [
            f"dataset {self.out} ({self.format}, model {self.model}, fingerprint {self.fingerprint})",
            (f"  identities {self.num_ids} x {self.images_per_id} images: {self.accepted}/{self.expected} written, "
             f"{self.dropped} dropped; shards {self.shards_done}/{self.shards} done{skipped}"),
            f"  filters {judge}; rejected {self.rejected} ({reasons})",
            ((f"  similarity ({self.judge}): mean intra-identity {f(self.mean_intra_similarity)}, "
              f"max inter-identity {f(self.max_inter_similarity)}" if self.similarity_note is None
              else f"  similarity not measured ({self.similarity_note})")
             + f"; identity vectors max cosine {f(self.identity_max_cosine)}"),
        ]
        if self.seconds is not None:
            lines.append(f"  time {self.seconds:.1f}s, {f(self.images_per_second, 2)} images/s")
        return "\n".join(lines)


def spec_file_of(loc: Location) -> Path | None:
    """A local file holding the location's ``spec.yaml`` (None: there is none); on a store, a fresh
    download of it."""
    if isinstance(loc, LocalLocation):
        path = loc.path / SPEC_FILE
        return path if path.is_file() else None
    return loc.local_file(SPEC_FILE, refresh=True) if loc.exists(SPEC_FILE) else None


# ---------------------------------------------------------------------- similarity maths

def similarity_matrix(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise similarity of rows: cosine, or ``1 - Euclidean distance``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return an @ bn.T
    if metric == "euclidean":
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        return 1.0 - np.sqrt(np.maximum(d2, 0.0))
    raise InvalidArgumentError(f"unknown similarity metric {metric!r}")


def separation(labels: np.ndarray, vectors: np.ndarray, metric: str, chunk: int = 2048
               ) -> tuple[float | None, float | None]:
    """(mean intra-identity similarity, max inter-identity similarity of centroids)."""
    labels = np.asarray(labels)
    ok = np.all(np.isfinite(vectors), axis=1)
    labels, vectors = labels[ok], np.asarray(vectors, dtype=np.float64)[ok]
    if labels.size == 0:
        return None, None
    intra: list[float] = []
    centroids: list[np.ndarray] = []
    for ident in np.unique(labels):
        v = vectors[labels == ident]
        if v.shape[0] >= 2:
            s = similarity_matrix(v, v, metric)
            n = v.shape[0]
            intra.append(float((s.sum() - np.trace(s)) / (n * (n - 1))))
        if metric == "cosine":
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        centroids.append(v.mean(axis=0))
    inter: float | None = None
    if len(centroids) >= 2:
        c = np.stack(centroids)
        best = -np.inf
        for start in range(0, len(c), chunk):
            s = similarity_matrix(c[start:start + chunk], c[start:], metric)
            k = s.shape[0]
            s[np.arange(k), np.arange(k)] = -np.inf
            best = max(best, float(s.max()))
        inter = best
    return (float(np.mean(intra)) if intra else None), inter


# ---------------------------------------------------------------------- reading a dataset
def iter_images(root: Any, fmt: str, records: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(manifest record, PNG bytes) for every sample, in manifest order (``root``: a folder or a
    store location; a store's shards are read one at a time through a local copy)."""
    root = open_location(root)
    if fmt == "webdataset":
        by_shard: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_shard.setdefault(r["shard"], []).append(r)
        for shard, recs in by_shard.items():
            samples = W.read_tar_samples(root.local_file(shard))
            for r in recs:
                yield r, samples[r["key"]]["png"]
    else:
        for r in records:
            yield r, root.read_bytes(r["file"])


def _metric_of(encoder: str | None) -> str:
    from facegen.errors import InvalidArgumentError
    from facegen.id.registry import get_encoder_spec

    try:
        return get_encoder_spec(encoder or "").metric    # a registered name or a trained run's folder
    except InvalidArgumentError:
        return "cosine"


def _shard_files(root: Any, shards: list[int], listing: dict[str, int], batch: int = 100
                 ) -> Iterator[tuple[int, bytes, bytes, bytes | None]]:
    """(shard, part, stats, embeddings or None) of ``shards``, read ``batch`` shards at a time."""
    for start in range(0, len(shards), batch):
        group = shards[start:start + batch]
        names = [name for k in group for name in (W.part_name(k), W.stats_name(k))]
        with_emb = [k for k in group if W.embeddings_name(k) in listing]
        blobs = iter(root.read_many(names))
        embs = dict(zip(with_emb, root.read_many([W.embeddings_name(k) for k in with_emb])))
        for k in group:
            yield k, next(blobs), next(blobs), embs.get(k)


def dataset_stats(root: Any, embed_fn: Callable[[np.ndarray], Any] | None = None,
                  progress: bool = False) -> Summary:
    """The summary of an existing dataset folder (complete or not) from its parts.

    Similarities use the embeddings the run stored (``parts/*.emb.npy``); when it stored
    none and ``embed_fn`` (``rgb -> IDEmbedding | None``) is given, images are embedded now.
    """
    from facegen.dataset.spec import DatasetSpec, read_stored_fingerprint


    root = open_location(root)
    spec_path = spec_file_of(root)
    if spec_path is None:
        raise InvalidArgumentError(f"{root} is not a facegen dataset (no {SPEC_FILE})")
    spec = DatasetSpec.from_yaml(spec_path, out=root.url)
    summary = Summary(
        out=root.url, model=spec.model, format=spec.format, num_ids=spec.num_ids,
        images_per_id=spec.images_per_id, expected=spec.num_ids * spec.images_per_id,
        shards=spec.num_shards, filters=bool(spec.filters), filter_encoder=spec.filter_encoder,
        fingerprint=read_stored_fingerprint(spec_path) or "")
    records: list[dict[str, Any]] = []   # kept only while images may still need embedding
    label_blocks: list[np.ndarray] = []   # int64 per shard (10M images: 80 MB, not a list of Python ints)
    emb_blocks: list[np.ndarray] = []
    judge: str | None = None
    have_all_embeddings = True
    listing = root.listing()   # one listing: a store is asked nothing per shard but its small files
    problems = W.shard_problems(root, list(range(spec.num_shards)), spec.format, checksums=False,
                                listing=listing)
    finished = [k for k, problem in problems.items() if problem is None]
    for k, part_bytes, stats_bytes, emb_bytes in _shard_files(root, finished, listing):
        summary.shards_done += 1
        part = W.parse_jsonl(part_bytes)
        label_blocks.append(np.fromiter((r["identity"] for r in part), dtype=np.int64, count=len(part)))
        summary.accepted += len(part)
        stats = parse_json(stats_bytes, name=f"{W.stats_name(k)} (shard statistics)", schema=STATS_SHAPE)
        for reason, n in stats.get("rejected", {}).items():
            summary.rejected_by_reason[reason] = summary.rejected_by_reason.get(reason, 0) + int(n)
        summary.dropped += int(stats.get("dropped", 0))
        summary.generated += int(stats.get("generated", 0))
        judge = judge or stats.get("embedding_encoder")
        if emb_bytes is not None:
            emb_blocks.append(parse_npy(emb_bytes, name=f"{W.embeddings_name(k)} (shard embeddings)"))
        elif part:
            have_all_embeddings = False
        if embed_fn is not None:
            records.extend(part)
    summary.rejected = sum(summary.rejected_by_reason.values())
    if summary.shards_done < summary.shards:
        logger.warning("%s: %d of %d shards are not finished", root, summary.shards - summary.shards_done,
                       summary.shards)

    labels = np.concatenate(label_blocks) if label_blocks else np.zeros(0, np.int64)
    vectors: np.ndarray | None = None
    note = "no images" if not labels.size else "no embeddings stored by the run; --measure embeds the images"
    if records and embed_fn is not None:         # --measure: embed the images now, whatever the run stored
        from tqdm.auto import tqdm

        from facegen.io import load_image

        rows: list[np.ndarray | None] = []
        for _, png in tqdm(iter_images(root, spec.format, records), total=len(records), unit="img",
                           desc="embedding", disable=not progress):
            emb = embed_fn(load_image(png))
            if emb is not None:
                judge = emb.encoder
            rows.append(None if emb is None else emb.vector)
        dim = next((r.shape[0] for r in rows if r is not None), 0)
        if dim:
            vectors = np.stack([r if r is not None else np.full(dim, np.nan, np.float32) for r in rows])
        else:
            judge = getattr(embed_fn, "encoder", None) or "the judge"
            note = f"{judge} found no face in any of the {len(rows)} images"
    elif labels.size and have_all_embeddings and emb_blocks:
        vectors = np.concatenate(emb_blocks)
    if vectors is not None and judge is not None:
        summary.mean_intra_similarity, summary.max_inter_similarity = separation(labels, vectors, _metric_of(judge))
        note = None
    summary.judge, summary.similarity_note = judge, note

    if IDENTITIES_FILE in listing and spec.num_ids <= _MAX_IDS_FOR_PAIRWISE:
        from facegen.dataset.identities import max_pairwise_cosine

        ids = load_npy(root.local_file(IDENTITIES_FILE, refresh=True), what="identities")
        if len(ids) >= 2:
            summary.identity_max_cosine = max_pairwise_cosine(ids)
    if SUMMARY_FILE in listing:
        try:
            last = parse_json(root.read_bytes(SUMMARY_FILE), name=f"{SUMMARY_FILE} (run summary)",
                              schema={"seconds": Opt((float, type(None))), "images_per_second": Opt((float, type(None)))})
            summary.seconds = last.get("seconds")
            summary.images_per_second = last.get("images_per_second")
        except FacegenError:
            pass
    return summary
