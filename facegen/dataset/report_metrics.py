"""The report's figures from the measurements (pure numpy): verification, separability,
variation, duplicates, leakage."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from facegen.dataset.report_analysis import Measurements, Reference
from facegen.dataset.report_source import (
    FULL_MATRIX_MAX,
    DEFAULT_MAX_IMPOSTOR_PAIRS,
    MAX_GENUINE_PAIRS_PER_IDENTITY,
    MAX_LISTED,
    VEC2FACE_MAX_COSINE,
    DatasetSource,
    encoder_spec_of,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- metrics (pure numpy)
def describe(values: Any) -> dict[str, Any]:
    """``{count, mean, std, p05, p50, p95}`` of the finite values (None when there are none)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"count": 0, "mean": None, "std": None, "p05": None, "p50": None, "p95": None}
    p05, p50, p95 = np.percentile(x, [5, 50, 95])
    return {"count": int(x.size), "mean": round_or_none(x.mean()), "std": round_or_none(x.std()), "p05": round_or_none(p05), "p50": round_or_none(p50),
            "p95": round_or_none(p95)}


def round_or_none(v: Any, nd: int = 4) -> float | None:
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
    out.update(accuracy=round_or_none((tar + 1.0 - far) / 2), tar=round_or_none(tar), far=round_or_none(far), eer=round_or_none(eer),
               eer_threshold=round_or_none(ts[k]) if np.isfinite(ts[k]) else None)
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
    # ``b`` prepared once (not once per block: at 1M identities that was 4 GB and O(n) per block),
    # and blocks of at most 2**24 similarities (128 MB) whatever len(b); the same numbers as
    # similarity_matrix(a_block, b)
    chunk = max(1, min(chunk, 2 ** 24 // max(1, len(b))))
    a64 = np.asarray(a, dtype=np.float64)
    b64 = a64 if b is a else np.asarray(b, dtype=np.float64)    # the centroids against themselves: one copy
    if metric == "cosine":
        bn_t = (b64 / np.maximum(np.linalg.norm(b64, axis=1, keepdims=True), 1e-12)).T
    elif metric == "euclidean":
        b_t, bb = b64.T, (b64 * b64).sum(1)[None, :]

    def block(x: np.ndarray) -> np.ndarray:
        if metric == "cosine":
            return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)) @ bn_t
        if metric == "euclidean":
            return 1.0 - np.sqrt(np.maximum((x * x).sum(1)[:, None] + bb - 2.0 * (x @ b_t), 0.0))
        return similarity_matrix(x, b64, metric)    # names the unknown metric

    for start in range(0, len(a), chunk):
        s = block(a64[start:start + chunk])
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
    if total <= n_max and n <= FULL_MATRIX_MAX:
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

    spec = encoder_spec_of(encoder)
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
                s = None if sim_full is None or not np.isfinite(sim_full[a, b]) else round_or_none(sim_full[a, b])
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
        sep["nearest_other_mean"] = round_or_none(best_s.mean())
        sep["nearest_other"] = {names[a]: [names[int(best[a])], round_or_none(best_s[a])] for a in range(len(cids))}
        sep["identities_too_close"] = [[names[a], names[b], round_or_none(s)] for a, b, s in close_pairs]
        sep["too_close_pairs"] = int(n_close)
        sep["too_close_fraction"] = round_or_none(np.mean(best_s >= thr))
        sep["unique_identities"] = int(np.sum(best_s < thr))
        unit = cents - cents.mean(axis=0) if metric != "cosine" else cents
        _, v2f, _, _ = _nearest(unit, unit, "cosine", exclude_self=True)
        sep["vec2face_unique_identities"] = int(np.sum(v2f <= VEC2FACE_MAX_COSINE))
    elif len(cids) == 1:
        sep.update(unique_identities=1, vec2face_unique_identities=1, too_close_fraction=0.0)

    # variation
    ps = np.array(pose_std) if pose_std else np.full((0, 3), np.nan)
    variation = {
        "yaw_std": round_or_none(ps[:, 0].mean(), 2) if len(ps) else None,
        "pitch_std": round_or_none(ps[:, 1].mean(), 2) if len(ps) else None,
        "roll_std": round_or_none(ps[:, 2].mean(), 2) if len(ps) else None,
        "brightness_std": round_or_none(np.mean(bright_std), 2) if bright_std else None,
        "sharpness_std": round_or_none(np.mean(sharp_std), 2) if sharp_std else None,
        "genuine_std": round_or_none(np.mean(genuine_std)) if genuine_std else None,
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
            leakage["nearest"] = {names[a]: {"reference": people[int(best[a])], "similarity": round_or_none(best_s[a])}
                                  for a in range(len(cids))}
            leakage["flagged"] = [names[a] for a in np.argsort(-best_s, kind="stable") if best_s[a] >= thr]

    unreadable = sorted(m.errors)
    return {
        "identities": n_ids,
        "images": len(source),
        "encoder": encoder,
        "metric": metric,
        "threshold": thr,
        "face_found_rate": round_or_none(found.sum() / n_read) if n_read else None,
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
