"""Identity sampling and intra-class variation (facegen.dataset.identities / variation)."""

from __future__ import annotations

import math
import time
from unittest import mock

import numpy as np
import pytest

from facegen.dataset import identities as I
from facegen.dataset.identities import GaussianPrior, leakage_mask, max_pairwise_cosine, sample_identities
from facegen.dataset.variation import (
    VariationConfig,
    derive_seed,
    embedding_sha256,
    make_work_item,
    perturb,
    sample_key,
)
from facegen.errors import InvalidArgumentError


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _sequential_reference(n: int, dim: int, seed: int, thr: float) -> np.ndarray:
    """The definition: draw one vector at a time, keep it if no kept one is too close."""
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    while len(kept) < n:
        v = I._unit_rows(rng.standard_normal((1, dim), dtype=np.float32))[0]
        if all(float(np.dot(v.astype(np.float64), u.astype(np.float64))) <= thr for u in kept):
            kept.append(v)
    return np.stack(kept)


# ---------------------------------------------------------------------- sampler
def test_pairwise_cosine_under_threshold_where_rejection_is_needed() -> None:
    # in 48-D random directions often exceed 0.4, so the rejection really works here
    raw = _unit(np.random.default_rng(0).standard_normal((800, 48)))
    gram = raw @ raw.T
    np.fill_diagonal(gram, -1)
    assert gram.max() > 0.4
    ids = sample_identities(800, 48, seed=0, max_cosine=0.4)
    assert ids.shape == (800, 48) and ids.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ids, axis=1), 1.0, atol=1e-5)
    cos = _unit(ids) @ _unit(ids).T
    np.fill_diagonal(cos, -1)
    assert cos.max() <= 0.4 + 1e-9
    assert max_pairwise_cosine(ids) <= 0.4 + 1e-6


def test_equals_sequential_greedy_and_ignores_batch_size() -> None:
    ref = _sequential_reference(60, 16, seed=3, thr=0.4)
    for bs in (1, 7, 64, 5000):
        np.testing.assert_array_equal(sample_identities(60, 16, seed=3, batch_size=bs), ref)


def test_fast_screen_gives_the_exact_answer() -> None:
    """The bf16/torch screen (used for large runs) decides exactly like the numpy path."""
    n, dim = 600, 24
    with mock.patch.object(I, "_screen_backend", lambda: "fp32"):
        numpy_path = sample_identities(n, dim, seed=5, max_cosine=0.5)
    with mock.patch.object(I, "_FAST_SCREEN_MIN_WORK", 0), mock.patch.object(I, "_screen_backend", lambda: "bf16"):
        bf16_path = sample_identities(n, dim, seed=5, max_cosine=0.5)
    np.testing.assert_array_equal(numpy_path, bf16_path)


def test_deterministic_for_a_seed() -> None:
    a = sample_identities(100, 128, seed=7)
    np.testing.assert_array_equal(a, sample_identities(100, 128, seed=7))
    assert not np.array_equal(a, sample_identities(100, 128, seed=8))


def test_infeasible_request_raises_a_clear_error_quickly() -> None:
    t0 = time.perf_counter()
    with pytest.raises(InvalidArgumentError, match=r"could only place \d+ of 500 identities of dim 8"):
        sample_identities(500, 8, seed=0, max_cosine=0.4)
    assert time.perf_counter() - t0 < 10


def test_tiny_space_128d_is_feasible_for_thousands() -> None:
    ids = sample_identities(5000, 128, seed=1)
    assert ids.shape == (5000, 128)
    assert max_pairwise_cosine(ids) <= 0.4 + 1e-6


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n >= 1"),
    ({"max_cosine": 1.0}, "max_cosine"),
    ({"batch_size": 0}, "batch_size"),
    ({"reject_near": np.zeros((3, 5))}, r"reject_near must be an \(m, 32\)"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"n": 10, "dim": 32, "seed": 0, **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        sample_identities(**args)


def test_ten_thousand_identities_take_seconds() -> None:
    t0 = time.perf_counter()
    ids = sample_identities(10_000, 512, seed=0)
    elapsed = time.perf_counter() - t0
    assert ids.shape == (10_000, 512)
    assert elapsed < 10, f"10k identities took {elapsed:.1f}s"


# ---------------------------------------------------------------------- leakage
def test_leakage_check_rejects_planted_near_copies() -> None:
    dim = 64
    free = sample_identities(50, dim, seed=4)
    # "real people" that sit right next to identities the sampler would otherwise pick
    rng = np.random.default_rng(99)
    real = free[:10] + rng.normal(0, 0.02, (10, dim)).astype(np.float32)
    assert leakage_mask(free, real, 0.4)[:10].all()
    guarded = sample_identities(50, dim, seed=4, reject_near=real, leakage_threshold=0.4)
    assert not leakage_mask(guarded, real, 0.4).any()
    cos = _unit(guarded) @ _unit(real).T
    assert cos.max() <= 0.4
    # the unplanted part of the stream is unaffected: identities 10.. of the free run survive
    kept = {embedding_sha256(v) for v in guarded}
    assert sum(embedding_sha256(v) in kept for v in free[10:]) >= 35


def test_leakage_mask_dimension_mismatch() -> None:
    with pytest.raises(InvalidArgumentError, match="dim"):
        leakage_mask(np.ones((2, 8)), np.ones((2, 9)))


# ---------------------------------------------------------------------- PCA prior
def test_gaussian_prior_fit_and_sample(tmp_path) -> None:
    rng = np.random.default_rng(0)
    dim = 32
    centre = _unit(rng.normal(size=(1, dim)))[0]
    # real embeddings clustered around one direction, elongated along one axis
    axis = _unit(rng.normal(size=(1, dim)))[0]
    real = centre + 0.3 * rng.normal(size=(400, 1)) * axis + 0.05 * rng.normal(size=(400, dim))
    path = tmp_path / "real.npy"
    np.save(path, real.astype(np.float32))
    prior = GaussianPrior.from_npy(path)
    assert prior.dim == dim and prior.components.shape[0] == dim
    np.testing.assert_allclose(prior.components @ prior.components.T, np.eye(dim), atol=1e-4)
    assert abs(abs(float(prior.components[0] @ axis)) - 1) < 0.05  # top component = elongated axis
    ids = sample_identities(30, dim, seed=2, prior=prior, max_cosine=0.99)
    mean_dir = _unit(prior.mean[None].astype(np.float64))[0]
    iso = sample_identities(30, dim, seed=2, max_cosine=0.99)
    assert float(np.mean(_unit(ids) @ mean_dir)) > 0.8 > float(np.mean(_unit(iso) @ mean_dir))


def test_prior_errors(tmp_path) -> None:
    with pytest.raises(InvalidArgumentError, match="m>=2"):
        GaussianPrior.fit(np.ones((1, 4)))
    with pytest.raises(InvalidArgumentError, match="no such file"):
        GaussianPrior.from_npy(tmp_path / "missing.npy")
    prior = GaussianPrior.fit(np.random.default_rng(0).normal(size=(10, 8)))
    with pytest.raises(InvalidArgumentError, match="dim 8"):
        sample_identities(5, 16, seed=0, prior=prior)


# ---------------------------------------------------------------------- variation
def test_derive_seed_is_stable_and_distinct() -> None:
    # a golden value: seeds must not change across Python versions or machines
    assert derive_seed(11, 0, 0) == derive_seed(11, 0, 0) == 5046733746890506453
    seeds = {derive_seed(11, i, j, a) for i in range(20) for j in range(10) for a in range(3)}
    assert len(seeds) == 600
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(11, 1, 2) != derive_seed(11, 2, 1) != derive_seed(12, 1, 2)
    assert derive_seed(11, 1, 2, purpose="noise") != derive_seed(11, 1, 2)


def test_noise_shares_40_40_20() -> None:
    cfg = VariationConfig()
    levels = [cfg.level_for(i, 10) for i in range(10)]
    assert levels == [0.3] * 4 + [0.5] * 4 + [0.7] * 2
    assert {cfg.level_for(i, 3) for i in range(3)} <= {0.3, 0.5, 0.7}
    with pytest.raises(InvalidArgumentError, match="sum to 1"):
        VariationConfig(noise_shares=(0.5, 0.4, 0.2))
    with pytest.raises(InvalidArgumentError, match="equal length"):
        VariationConfig(noise_levels=(0.1,), noise_shares=(0.5, 0.5))


@pytest.mark.parametrize("level", [0.3, 0.5, 0.7])
def test_perturb_restores_norm_and_matches_vec2face_angle(level: float) -> None:
    base = _unit(np.random.default_rng(1).normal(size=(1, 512)))[0].astype(np.float32) * 3.0
    cosines = []
    for s in range(30):
        v = perturb(base, level, seed=s)
        assert abs(np.linalg.norm(v) - 3.0) < 1e-5
        cosines.append(float(v @ base) / 9.0)
    assert abs(np.mean(cosines) - 1 / math.sqrt(1 + level**2)) < 0.02


def test_work_items_deterministic_and_attempts_differ() -> None:
    base = sample_identities(1, 128, seed=0)[0]
    cfg = VariationConfig(prompts=("a photo", "a portrait"), poses=(-30, 0, 30))
    a = make_work_item(11, 3, 2, base, 5, cfg)
    b = make_work_item(11, 3, 2, base, 5, cfg)
    assert a.seed == b.seed and a.prompt == b.prompt and a.pose == b.pose
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert a.key == sample_key(3, 2) == "000003_002"
    assert a.prompt in cfg.prompts and a.pose in cfg.poses
    retry = make_work_item(11, 3, 2, base, 5, cfg, attempt=1)
    assert retry.seed != a.seed and not np.array_equal(retry.embedding, a.embedding)
    picked = {make_work_item(11, 3, j, base, 50, cfg).prompt for j in range(50)}
    assert picked == set(cfg.prompts)
