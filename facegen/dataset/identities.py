"""Synthetic identity sampling: well-separated unit vectors in an embedding space.

Vec2Face (compat.md 2.12) draws Gaussian vectors and drops any whose cosine to an already
accepted one exceeds 0.4; an alternative draws from a Gaussian fitted (PCA) to real
identity centres.  Here both are done in batches with matrix products, and candidates
are processed in the order the random stream produces them, so the result depends only on
the seed (not on ``batch_size``) and is the greedy sequential result.

Each batch is screened against the accepted set with a fast matrix product (bfloat16 on
CPUs that have native bf16 dot products, float32 otherwise, CUDA when present) using a
margin larger than that product's rounding error; every pair the screen flags is then
decided exactly in float64.  The screen therefore never changes the answer, only the time.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

DEFAULT_MAX_COSINE = 0.4
DEFAULT_LEAKAGE_THRESHOLD = 0.4
DEFAULT_BATCH_SIZE = 4096
# How many candidates, in multiples of n, the sampler may draw before it gives up.
DEFAULT_MAX_DRAW_FACTOR = 50

# |bf16(a).bf16(b) - a.b| <= (2u + u^2) * sum|a_i b_i| <= ~0.0079 for unit vectors
# (u = 2^-8) plus float32 accumulation error; 0.02 covers it with room to spare.
_BF16_MARGIN = 0.02
_FP32_MARGIN = 1e-3
_ACCEPTED_CHUNK = 16384
_RATE_WINDOW = 4096
_FAST_SCREEN_MIN_WORK = 20000 * 512


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64 norms), returned as float32."""
    x64 = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x64, x64))
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise InvalidArgumentError("embeddings must be finite, non-zero vectors")
    return (x64 / norms[:, None]).astype(np.float32)


def load_embeddings(path: str | Path) -> np.ndarray:
    """Read a ``.npy`` file of real embeddings, shape ``(m, dim)``, as float32."""
    from facegen.io.arrays import load_npy  # noqa: PLC0415

    p = Path(path)
    x = load_npy(p, what="embedding file", error=InvalidArgumentError)   # never pickles, header checked first
    if x.ndim != 2 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.number):
        raise InvalidArgumentError(f"{p} must hold a numeric (m, dim) array of embeddings, got shape {x.shape}")
    return np.asarray(x, dtype=np.float32)


@dataclass(frozen=True)
class GaussianPrior:
    """A Gaussian over identity vectors fitted with PCA to real embeddings.

    Samples are ``mean + (z * sqrt(variances)) @ components`` with ``z ~ N(0, I)``; the
    sampler normalises them to unit length.  Fit on unit-normalised real vectors (the
    identity space is directions), as Vec2Face does with identity centre features.
    """

    mean: np.ndarray          # (dim,)
    components: np.ndarray    # (k, dim), orthonormal rows
    variances: np.ndarray     # (k,)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, x: np.ndarray, n_components: int | None = None) -> GaussianPrior:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise InvalidArgumentError(f"GaussianPrior.fit needs an (m>=2, dim) array, got shape {x.shape}")
        x = _unit_rows(x).astype(np.float64)
        m, dim = x.shape
        k_max = min(m - 1, dim)
        k = k_max if n_components is None else int(n_components)
        if not 1 <= k <= k_max:
            raise InvalidArgumentError(f"n_components must be in 1..{k_max} for {m} embeddings of dim {dim}, got {k}")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        variances = (s[:k] ** 2) / (m - 1)
        return cls(mean.astype(np.float32), vt[:k].astype(np.float32), variances.astype(np.float32))

    @classmethod
    def from_npy(cls, path: str | Path, n_components: int | None = None) -> GaussianPrior:
        return cls.fit(load_embeddings(path), n_components)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` raw (not normalised) float32 vectors."""
        z = rng.standard_normal((n, self.components.shape[0]), dtype=np.float32)
        z *= np.sqrt(self.variances)[None, :]
        return self.mean[None, :] + z @ self.components


@functools.lru_cache(maxsize=1)
def _screen_backend() -> str:
    """'cuda', 'bf16' (CPU with fast bf16 products) or 'fp32' (numpy)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "fp32"
    if torch.cuda.is_available():
        return "cuda"
    a = torch.randn(1024, 512)
    b = torch.randn(4096, 512)
    ab, bb = a.to(torch.bfloat16), b.to(torch.bfloat16)
    ab @ bb.T  # warm-up
    a.numpy() @ b.numpy().T
    t0 = time.perf_counter()
    ab @ bb.T
    t_bf16 = time.perf_counter() - t0
    t0 = time.perf_counter()
    a.numpy() @ b.numpy().T
    t_fp32 = time.perf_counter() - t0
    return "bf16" if t_bf16 < 0.6 * t_fp32 else "fp32"


class _Screen:
    """Finds pairs whose cosine may exceed a threshold, never missing one.

    Holds the accepted identities in the screening precision; ``flagged`` compares a batch
    with them, ``flagged_within`` compares a batch with itself.  Flagged pairs are then
    decided exactly by the caller.
    """

    def __init__(self, capacity: int, dim: int) -> None:
        # small runs are quick in numpy; importing and probing torch would cost more
        self.backend = _screen_backend() if capacity * dim >= _FAST_SCREEN_MIN_WORK else "fp32"
        self.margin = _BF16_MARGIN if self.backend == "bf16" else _FP32_MARGIN
        self.count = 0
        if self.backend == "fp32":
            self._store = np.empty((capacity, dim), dtype=np.float32)
        else:
            import torch

            self._torch = torch
            self._dtype = torch.bfloat16 if self.backend == "bf16" else torch.float32
            self._device = "cuda" if self.backend == "cuda" else "cpu"
            self._store = torch.empty((capacity, dim), dtype=self._dtype, device=self._device)

    def _convert(self, x: np.ndarray):
        if self.backend == "fp32":
            return x
        return self._torch.from_numpy(np.ascontiguousarray(x)).to(device=self._device, dtype=self._dtype)

    def add(self, x: np.ndarray) -> None:
        n = x.shape[0]
        self._store[self.count:self.count + n] = self._convert(x)
        self.count += n

    def _hot_pairs(self, sims, cut: float) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) indices of entries above ``cut``; row maxima first, since a full
        nonzero() over the block costs more than the product itself."""
        if self.backend == "fp32":
            hot = np.nonzero(sims.max(axis=1) > cut)[0]
            if hot.size == 0:
                return hot, hot
            r, cols = np.nonzero(sims[hot] > cut)
            return hot[r], cols
        torch = self._torch
        hot = torch.nonzero(sims.amax(dim=1).float() > cut).flatten()
        if hot.numel() == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        idx = torch.nonzero(sims[hot].float() > cut).cpu().numpy()
        return hot.cpu().numpy()[idx[:, 0]], idx[:, 1]

    def flagged(self, x: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pairs (rows of x, rows of the store) with approximate cosine > threshold - margin."""
        out: list[tuple[np.ndarray, np.ndarray]] = []
        if self.count == 0:
            return out
        cut = threshold - self.margin
        xs = self._convert(x)
        for start in range(0, self.count, _ACCEPTED_CHUNK):
            stop = min(self.count, start + _ACCEPTED_CHUNK)
            rows, cols = self._hot_pairs(xs @ self._store[start:stop].T, cut)
            if rows.size:
                out.append((rows, cols + start))
        return out

    def flagged_within(self, x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (i, j), i < j, of rows of x with approximate cosine > threshold - margin."""
        xs = self._convert(x)
        sims = xs @ xs.T
        if self.backend == "fp32":
            np.fill_diagonal(sims, -2.0)
        else:
            sims.fill_diagonal_(-2.0)
        rows, cols = self._hot_pairs(sims, threshold - self.margin)
        upper = rows < cols
        return rows[upper], cols[upper]


def _exact_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


def _greedy_in_batch(cand: np.ndarray, alive: np.ndarray, threshold: float, screen: _Screen) -> np.ndarray:
    """Sequential greedy acceptance inside one batch, computed by fixed-point iteration.

    Candidate i is kept iff no earlier kept candidate j conflicts with it.  Nodes with no
    undecided or kept earlier conflict are kept; nodes with a kept earlier conflict are
    rejected; repeating this decides every node, with the sequential result.
    """
    keep = alive.copy()
    idx = np.nonzero(alive)[0]
    if idx.size < 2:
        return keep
    sub = cand[idx]
    ii, jj = screen.flagged_within(sub, threshold)
    if ii.size:
        exact = _exact_cos(sub[ii], sub[jj]) > threshold
        ii, jj = ii[exact], jj[exact]
    if ii.size == 0:
        return keep
    # only nodes touching a conflict need the iteration
    nodes = np.unique(np.concatenate([ii, jj]))
    pos = {int(v): k for k, v in enumerate(nodes)}
    m = nodes.size
    conflict = np.zeros((m, m), dtype=bool)   # conflict[later, earlier]
    conflict[[pos[int(j)] for j in jj], [pos[int(i)] for i in ii]] = True
    state = np.zeros(m, dtype=np.int8)        # 0 undecided, 1 kept, -1 rejected
    while np.any(state == 0):
        undecided = state == 0
        earlier_kept = conflict[:, state == 1].any(axis=1)
        earlier_open = conflict[:, undecided].any(axis=1)
        state[undecided & earlier_kept] = -1
        state[undecided & ~earlier_kept & ~earlier_open] = 1
    keep[idx[nodes[state == -1]]] = False
    return keep


def leakage_mask(candidates: np.ndarray, real: np.ndarray, threshold: float = DEFAULT_LEAKAGE_THRESHOLD) -> np.ndarray:
    """True for each candidate whose cosine to any real embedding exceeds ``threshold``."""
    cand = _unit_rows(candidates)
    ref = _unit_rows(real)
    if cand.shape[1] != ref.shape[1]:
        raise InvalidArgumentError(
            f"real embeddings have dim {ref.shape[1]} but identities have dim {cand.shape[1]}")
    leaked = np.zeros(cand.shape[0], dtype=bool)
    for start in range(0, ref.shape[0], _ACCEPTED_CHUNK):
        block = ref[start:start + _ACCEPTED_CHUNK]
        rows, cols = np.nonzero(cand @ block.T > threshold - _FP32_MARGIN)
        if rows.size:
            exact = _exact_cos(cand[rows], block[cols]) > threshold
            leaked[rows[exact]] = True
    return leaked


def max_pairwise_cosine(x: np.ndarray, chunk: int = 4096) -> float:
    """The largest cosine between two different rows of ``x`` (float32 products)."""
    u = _unit_rows(x)
    n = u.shape[0]
    if n < 2:
        return float("nan")
    best = -1.0
    for start in range(0, n, chunk):
        block = u[start:start + chunk] @ u[start:].T
        k = block.shape[0]
        block[np.arange(k), np.arange(k)] = -np.inf  # the diagonal sits at column offset 0
        best = max(best, float(block.max()))
    return best


#: from this many identities on, sampling shows a progress bar
_PROGRESS_FROM = 20_000


def sample_identities(
    n: int,
    dim: int,
    seed: int,
    max_cosine: float = DEFAULT_MAX_COSINE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    prior: GaussianPrior | None = None,
    reject_near: np.ndarray | None = None,
    leakage_threshold: float = DEFAULT_LEAKAGE_THRESHOLD,
    max_draw_factor: float = DEFAULT_MAX_DRAW_FACTOR,
) -> np.ndarray:
    """``n`` unit identity vectors of dimension ``dim``, pairwise cosine <= ``max_cosine``.

    Candidates come from ``N(0, I)`` (isotropic directions) or from ``prior``; any within
    ``leakage_threshold`` cosine of a row of ``reject_near`` (real people's embeddings) is
    dropped, then any within ``max_cosine`` of an accepted identity.  The output depends on
    ``seed`` only (not on ``batch_size``).  Raises InvalidArgumentError when ``n`` vectors
    cannot be placed within ``max_draw_factor * n`` candidates.
    """
    if n < 1 or dim < 2:
        raise InvalidArgumentError(f"need n >= 1 and dim >= 2, got n={n}, dim={dim}")
    if not -1.0 < max_cosine < 1.0:
        raise InvalidArgumentError(f"max_cosine must be in (-1, 1), got {max_cosine}")
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if prior is not None and prior.dim != dim:
        raise InvalidArgumentError(f"the prior was fitted on dim {prior.dim} embeddings, not {dim}")
    real = None
    if reject_near is not None:
        real = np.asarray(reject_near, dtype=np.float32)
        if real.ndim != 2 or real.shape[1] != dim:
            raise InvalidArgumentError(f"reject_near must be an (m, {dim}) array, got shape {real.shape}")

    rng = np.random.default_rng(seed)
    accepted = np.empty((n, dim), dtype=np.float32)
    screen = _Screen(n, dim)
    count = drawn = leaked = 0
    recent: list[tuple[int, int]] = []   # (drawn, accepted) of the latest batches
    budget = math.ceil(max_draw_factor * n) + batch_size
    t0 = time.perf_counter()
    from tqdm.auto import tqdm  # noqa: PLC0415

    # a large spec samples for minutes: a bar (on a terminal only) says it is moving
    bar = tqdm(total=n, desc="sampling identities", unit="id", disable=None if n >= _PROGRESS_FROM else True)
    while count < n:
        if drawn >= budget:
            break
        raw = prior.sample(batch_size, rng) if prior is not None else rng.standard_normal((batch_size, dim), dtype=np.float32)
        drawn += batch_size
        cand = _unit_rows(raw)
        alive = np.ones(batch_size, dtype=bool)
        if real is not None:
            bad = leakage_mask(cand, real, leakage_threshold)
            leaked += int(bad.sum())
            alive &= ~bad
        for rows, cols in screen.flagged(cand, max_cosine):
            exact = _exact_cos(cand[rows], accepted[cols]) > max_cosine
            alive[rows[exact]] = False
        keep = _greedy_in_batch(cand, alive, max_cosine, screen)
        new = cand[keep][: n - count]
        accepted[count:count + len(new)] = new
        screen.add(new)
        count += len(new)
        bar.update(len(new))
        recent.append((batch_size, len(keep.nonzero()[0])))
        while len(recent) > 1 and sum(d for d, _ in recent[1:]) >= _RATE_WINDOW:
            recent.pop(0)
        window = sum(d for d, _ in recent)
        rate = sum(a for _, a in recent) / window
        if count < n and window >= _RATE_WINDOW and rate * (budget - drawn) < 0.5 * (n - count):
            break  # the acceptance rate only falls as identities are added: the budget cannot be met
    bar.close()
    if count < n:
        raise InvalidArgumentError(
            f"could only place {count} of {n} identities of dim {dim} with pairwise cosine <= {max_cosine} "
            f"after {drawn} candidates ({leaked} rejected as leaks): lower num_ids, raise max_cosine "
            "or use a larger embedding dimension")
    logger.info("sampled %d identities (dim %d, max cosine %.2f) from %d candidates in %.2fs [%s screen]; "
                "%d rejected as too close to real embeddings",
                n, dim, max_cosine, drawn, time.perf_counter() - t0, screen.backend, leaked)
    return accepted
