"""The verification protocol against an independent implementation written here (plain loops,
scikit-learn's KFold) on fixed embeddings; separated embeddings score 1.0, random ones about 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.errors import InvalidArgumentError
from facegen.fr.protocol import flip_sum, verify, verify_distances


def reference_accuracy(e1: np.ndarray, e2: np.ndarray, same: np.ndarray, folds: int = 10):
    """insightface's calculate_roc accuracy, re-derived: KFold(shuffle=False), threshold grid
    0..4 step 0.01 chosen on the training folds (first best), accuracy on the test fold."""
    from sklearn.model_selection import KFold

    thresholds = [k / 100 for k in range(400)]
    dist = [float(sum((x - y) ** 2 for x, y in zip(a, b))) for a, b in zip(e1.tolist(), e2.tolist())]
    accs, thrs = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(np.arange(len(dist))):
        def acc(idx, t):
            return sum((dist[i] < t) == bool(same[i]) for i in idx) / len(idx)
        best_t, best_a = None, -1.0
        for t in thresholds:
            a = acc(train, t)
            if a > best_a:
                best_t, best_a = t, a
        accs.append(acc(test, best_t))
        thrs.append(best_t)
    return float(np.mean(accs)), float(np.std(accs)), thrs, accs


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def noisy_pairs():
    rng = np.random.default_rng(3)
    n = 400
    same = rng.random(n) < 0.5
    base = _unit(rng.normal(size=(n, 16)))
    other = _unit(rng.normal(size=(n, 16)))
    e2 = np.where(same[:, None], base + 0.9 * rng.normal(size=(n, 16)) / 4, other)
    return base, _unit(e2), same


def test_matches_independent_implementation(noisy_pairs):
    e1, e2, same = noisy_pairs
    ours = verify(e1, e2, same)
    acc, std, thrs, accs = reference_accuracy(e1, e2, same)
    assert 0.6 < acc < 1.0          # neither trivial nor perfect: thresholds matter
    assert ours.accuracy == pytest.approx(acc, abs=1e-12)
    assert ours.accuracy_std == pytest.approx(std, abs=1e-12)
    assert ours.fold_threshold == pytest.approx(thrs, abs=1e-9)
    assert ours.fold_accuracy == pytest.approx(accs, abs=1e-12)


def test_uneven_folds_match_kfold():
    rng = np.random.default_rng(5)
    n = 97                       # not a multiple of 10: the first 7 folds are one longer
    e1, e2 = _unit(rng.normal(size=(n, 8))), _unit(rng.normal(size=(n, 8)))
    same = rng.random(n) < 0.5
    e2[same] = _unit(e1[same] + 0.5 * rng.normal(size=(int(same.sum()), 8)))
    ours = verify(e1, e2, same)
    acc, _, thrs, _ = reference_accuracy(e1, e2, same)
    assert ours.accuracy == pytest.approx(acc, abs=1e-12)
    assert ours.fold_threshold == pytest.approx(thrs, abs=1e-9)


def test_separated_is_perfect_and_random_is_chance():
    rng = np.random.default_rng(0)
    n = 2000
    same = np.arange(n) % 2 == 0
    e1 = _unit(rng.normal(size=(n, 64)))
    e2 = np.where(same[:, None], e1, -e1)              # genuine: distance 0; impostor: distance 4
    sep = verify(e1, e2, same)
    assert sep.accuracy == 1.0 and sep.eer == 0.0 and sep.tar_at_far["1e-3"] == 1.0
    rand = verify(_unit(rng.normal(size=(n, 64))), _unit(rng.normal(size=(n, 64))), same)
    assert 0.4 < rand.accuracy < 0.6
    assert 0.4 < rand.eer < 0.6


def test_eer_tar_and_val_from_the_roc():
    # genuine distances 0..0.98, impostor 1.0..1.98 shifted by 0.5: a known overlap
    gen = np.arange(100) / 100 * 1.0
    imp = 0.5 + np.arange(100) / 100 * 1.0
    dist = np.concatenate([gen, imp])
    same = np.concatenate([np.ones(100, bool), np.zeros(100, bool)])
    order = np.random.default_rng(1).permutation(200)
    r = verify_distances(dist[order], same[order])
    assert r.eer == pytest.approx(0.25, abs=0.011)     # half the genuine above 0.5, half impostors below 1.0 ...
    assert r.tar_at_far["1e-3"] is None                # 100 impostors cannot measure FAR 1e-3
    assert r.tar_at_far["1e-4"] is None
    assert 0.0 <= r.val <= 1.0 and r.far <= 0.02


def test_flip_sum_normalises_the_sum():
    a = np.array([[3.0, 0.0]])
    b = np.array([[0.0, 4.0]])
    assert flip_sum(a, b) == pytest.approx(np.array([[0.6, 0.8]]))


def test_needs_both_kinds_and_enough_pairs():
    e = _unit(np.ones((20, 4)))
    with pytest.raises(InvalidArgumentError, match="all genuine or all impostor"):
        verify(e, e, np.ones(20, bool))
    with pytest.raises(InvalidArgumentError, match="10 folds"):
        verify(e[:5], e[:5], np.array([1, 0, 1, 0, 1], bool))
