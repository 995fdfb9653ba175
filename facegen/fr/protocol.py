"""The face-verification protocol the field reports, on embeddings of pairs.

As insightface's ``recognition/arcface_torch/eval/verification.py`` (read, not copied) and
every synthetic-dataset paper since (Vec2Face, IDiff-Face, DCFace, Arc2Face):

- each image's embedding is the sum of the embeddings of the image and of its horizontal
  flip, then L2-normalised (:func:`flip_sum`, done by the caller that embeds);
- the distance of a pair is the **squared** L2 distance of the two unit vectors (0..4);
- the pairs are split into 10 folds **without shuffling** (the set's own order);
- on each fold, the threshold in ``0, 0.01, …, 3.99`` with the best accuracy on the other
  nine folds is applied (a pair is "same" when its distance is below it); the reported
  accuracy is the mean ± std over the folds;
- VAL at FAR 1e-3: on the other nine folds the threshold giving FAR 1e-3 is interpolated,
  and the fold's VAL (true accept rate) and FAR are measured with it.

Beyond that protocol, from the ROC of all pairs (scikit-learn's ``roc_curve``): the EER and
the TAR at FAR 1e-3 and 1e-4.  A TAR at a FAR below one impostor pair (FAR × impostors < 1)
is not measurable on that set and is reported as ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError

#: the protocol's threshold grid on squared L2 distance
THRESHOLDS = np.arange(0, 4, 0.01)
NUM_FOLDS = 10
VAL_FAR = 1e-3
TAR_FARS = (1e-3, 1e-4)


def flip_sum(vectors: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """The protocol's embedding: ``normalise(v(image) + v(flipped image))``, row-wise."""
    s = np.asarray(vectors, dtype=np.float64) + np.asarray(flipped, dtype=np.float64)
    return l2_normalise(s)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def squared_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The protocol's distance between rows of two unit-vector arrays."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return np.sum(d * d, axis=1)


def fold_indices(n: int, num_folds: int = NUM_FOLDS) -> list[np.ndarray]:
    """Unshuffled contiguous folds, the first ``n % num_folds`` one longer (scikit-learn's
    ``KFold(shuffle=False)`` split)."""
    if n < num_folds:
        raise InvalidArgumentError(f"{n} pairs cannot make {num_folds} folds: the protocol needs at least "
                                   f"{num_folds} pairs")
    sizes = np.full(num_folds, n // num_folds, dtype=np.int64)
    sizes[: n % num_folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.arange(bounds[k], bounds[k + 1]) for k in range(num_folds)]


def _rates(dist: np.ndarray, same: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accuracy, TAR, FAR) of "same when dist < thr" for every threshold (vectorised)."""
    pred = dist[None, :] < thr[:, None]
    pos = same.sum()
    neg = same.size - pos
    tp = (pred & same[None, :]).sum(axis=1)
    fp = (pred & ~same[None, :]).sum(axis=1)
    tn = neg - fp
    acc = (tp + tn) / same.size
    tar = tp / pos if pos else np.zeros_like(tp, dtype=np.float64)
    far = fp / neg if neg else np.zeros_like(fp, dtype=np.float64)
    return acc, tar, far


@dataclass
class Verification:
    """The protocol's figures for one set of pairs."""

    pairs: int
    genuine: int
    impostor: int
    num_folds: int
    accuracy: float
    accuracy_std: float
    fold_accuracy: list[float]
    fold_threshold: list[float]
    threshold: float                      # the mean of the folds' thresholds (squared L2)
    val: float
    val_std: float
    far: float
    eer: float
    tar_at_far: dict[str, float | None]
    roc: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "genuine": self.genuine, "impostor": self.impostor,
                "folds": self.num_folds, "accuracy": self.accuracy, "accuracy_std": self.accuracy_std,
                "threshold": self.threshold, "fold_accuracy": self.fold_accuracy,
                "fold_threshold": self.fold_threshold,
                "val_at_far": {"far_target": VAL_FAR, "val": self.val, "val_std": self.val_std, "far": self.far},
                "eer": self.eer, "tar_at_far": self.tar_at_far}


def far_key(far: float) -> str:
    """``1e-3`` style keys of the ``tar_at_far`` map (a stable schema)."""
    return f"{far:.0e}".replace("e-0", "e-")


def verify(emb1: np.ndarray, emb2: np.ndarray, same: np.ndarray, num_folds: int = NUM_FOLDS) -> Verification:
    """The protocol on the protocol embeddings (already flip-summed and normalised) of the two
    sides of every pair, in the set's order; ``same[i]`` says whether pair ``i`` is genuine."""
    emb1, emb2 = np.asarray(emb1), np.asarray(emb2)
    same = np.asarray(same, dtype=bool)
    if emb1.shape != emb2.shape or emb1.ndim != 2 or emb1.shape[0] != same.shape[0]:
        raise InvalidArgumentError(f"pair embeddings of shapes {emb1.shape}, {emb2.shape} do not match "
                                   f"{same.shape[0]} labels")
    if same.all() or not same.any():
        raise InvalidArgumentError("the pairs are all genuine or all impostor: verification needs both")
    dist = squared_l2(emb1, emb2)
    return verify_distances(dist, same, num_folds)


def verify_distances(dist: np.ndarray, same: np.ndarray, num_folds: int = NUM_FOLDS) -> Verification:
    """:func:`verify` from the squared-L2 distances of the pairs."""
    dist = np.asarray(dist, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = fold_indices(dist.size, num_folds)
    accs, thrs, vals, fars = [], [], [], []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        acc_train, _, _ = _rates(dist[train], same[train], THRESHOLDS)
        best = THRESHOLDS[int(np.argmax(acc_train))]          # first best, as argmax
        acc_test, _, _ = _rates(dist[test], same[test], np.array([best]))
        accs.append(float(acc_test[0]))
        thrs.append(float(best))
        # VAL at FAR: the threshold interpolated on the training folds' FAR curve
        _, _, far_train = _rates(dist[train], same[train], THRESHOLDS)
        if far_train.max() >= VAL_FAR:
            # far_train rises with the threshold; interpolate threshold(far) on the rising part
            order = np.argsort(far_train, kind="stable")
            far_sorted, thr_sorted = far_train[order], THRESHOLDS[order]
            uniq, first = np.unique(far_sorted, return_index=True)
            thr_val = float(np.interp(VAL_FAR, uniq, thr_sorted[first]))
        else:
            thr_val = 0.0
        _, tar_t, far_t = _rates(dist[test], same[test], np.array([thr_val]))
        vals.append(float(tar_t[0]))
        fars.append(float(far_t[0]))
    eer, tars, roc = roc_figures(-dist, same)
    return Verification(pairs=int(dist.size), genuine=int(same.sum()), impostor=int((~same).sum()),
                        num_folds=num_folds, accuracy=float(np.mean(accs)), accuracy_std=float(np.std(accs)),
                        fold_accuracy=accs, fold_threshold=thrs, threshold=float(np.mean(thrs)),
                        val=float(np.mean(vals)), val_std=float(np.std(vals)), far=float(np.mean(fars)),
                        eer=eer, tar_at_far=tars, roc=roc)


def roc_figures(score: np.ndarray, same: np.ndarray) -> tuple[float, dict[str, float | None], dict[str, list[float]]]:
    """(EER, {far: TAR}, the ROC) of scores (higher = more alike) over all pairs, from
    scikit-learn's ``roc_curve``."""
    try:
        from sklearn.metrics import roc_curve  # noqa: PLC0415
    except ImportError:
        from facegen.errors import MissingDependencyError  # noqa: PLC0415
        raise MissingDependencyError("scikit-learn", "fr", "the ROC of face verification") from None
    fpr, tpr, _ = roc_curve(same.astype(np.int64), score)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # the crossing between ROC points i and its neighbour: linear interpolation of fnr - fpr
    eer = float((fpr[i] + fnr[i]) / 2)
    for j in (i - 1, i + 1):
        if 0 <= j < fpr.size and np.sign(fnr[j] - fpr[j]) != np.sign(fnr[i] - fpr[i]):
            a, b = fnr[i] - fpr[i], fnr[j] - fpr[j]
            t = a / (a - b)
            eer = float(fpr[i] + t * (fpr[j] - fpr[i]))
            break
    impostors = int((~same).sum())
    tars: dict[str, float | None] = {}
    for far in TAR_FARS:
        if far * impostors < 1:
            tars[far_key(far)] = None          # not measurable: fewer than one false accept allowed
        else:
            ok = fpr <= far
            tars[far_key(far)] = float(tpr[ok].max()) if ok.any() else 0.0
    return eer, tars, {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


@dataclass
class GroupFigures:
    group: str
    pairs: int
    genuine: int
    impostor: int
    accuracy: float
    fnmr: float | None
    fmr: float | None


def group_figures(dist: np.ndarray, same: np.ndarray, group_of_pair: list[str | None],
                  threshold: float) -> dict[str, Any]:
    """Accuracy, FNMR and FMR per group at one global ``threshold`` (squared L2; "same" below
    it), and the gaps between groups.  A pair counts in a group when both its identities are in
    that group (``group_of_pair[i]``; ``None`` for a cross-group or ungrouped pair)."""
    dist = np.asarray(dist, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    pred = dist < threshold
    rows: dict[str, GroupFigures] = {}
    for g in sorted({g for g in group_of_pair if g is not None}):
        m = np.array([x == g for x in group_of_pair])
        gen, imp = same & m, ~same & m
        rows[g] = GroupFigures(g, int(m.sum()), int(gen.sum()), int(imp.sum()),
                               float((pred[m] == same[m]).mean()),
                               float((~pred[gen]).mean()) if gen.any() else None,
                               float(pred[imp].mean()) if imp.any() else None)

    def gap(values: list[float | None]) -> float | None:
        v = [x for x in values if x is not None]
        return float(max(v) - min(v)) if len(v) >= 2 else None

    return {"threshold": float(threshold),
            "groups": {g: r.__dict__ for g, r in rows.items()},
            "gap": {"accuracy": gap([r.accuracy for r in rows.values()]),
                    "fnmr": gap([r.fnmr for r in rows.values()]),
                    "fmr": gap([r.fmr for r in rows.values()])},
            "outside_groups": int(sum(g is None for g in group_of_pair))}


def best_threshold(dist: np.ndarray, same: np.ndarray) -> float:
    """The grid threshold with the best accuracy over all pairs (the global one for groups)."""
    acc, _, _ = _rates(np.asarray(dist, dtype=np.float64), np.asarray(same, dtype=bool), THRESHOLDS)
    return float(THRESHOLDS[int(np.argmax(acc))])
