"""Intra-class variation: one work item (perturbed embedding, seed, prompt, pose) per image.

Vec2Face (compat.md 2.12, ``sample_nearby_vectors``) adds ``N(0, eps)`` noise to 40/40/20 %
of an identity's samples with ``eps`` = 0.3/0.5/0.7 and rescales each to the original norm.
Its identity vectors have norm about ``sqrt(dim)`` (standard normal draws), so here, on unit
vectors, the noise per coordinate is ``eps / sqrt(dim)`` (times the norm): the same angles for any dimension
(expected cosine to the identity about ``1 / sqrt(1 + eps**2)``: 0.96 / 0.89 / 0.82).

Every number drawn for an image comes from a seed derived from (run seed, identity, image
index, attempt) with a stable hash, so an image is the same whatever the batch, worker or
engine that produces it, and a rejected image is redone with the next attempt's seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError

DEFAULT_NOISE_LEVELS: tuple[float, ...] = (0.3, 0.5, 0.7)
DEFAULT_NOISE_SHARES: tuple[float, ...] = (0.4, 0.4, 0.2)
_SEED_BITS = 63


def derive_seed(run_seed: int, identity: int, index: int, attempt: int = 0, purpose: str = "image") -> int:
    """A 63-bit seed from (run seed, identity, image index, attempt, purpose).

    blake2b of a canonical string: stable across Python versions, processes and machines
    (unlike ``hash()``), and independent streams for different purposes.
    """
    key = f"facegen-dataset/v1/{purpose}/{int(run_seed)}/{int(identity)}/{int(index)}/{int(attempt)}"
    digest = hashlib.blake2b(key.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - _SEED_BITS)


@dataclass(frozen=True)
class VariationConfig:
    """How an identity's images differ: noise levels and their shares, prompts, poses."""

    noise_levels: tuple[float, ...] = DEFAULT_NOISE_LEVELS
    noise_shares: tuple[float, ...] = DEFAULT_NOISE_SHARES
    prompts: tuple[str, ...] = ()
    poses: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        levels, shares = tuple(self.noise_levels), tuple(self.noise_shares)
        if not levels or len(levels) != len(shares):
            raise InvalidArgumentError(
                f"noise_levels {list(levels)} and noise_shares {list(shares)} must be non-empty and of equal length")
        if any(lv < 0 or not math.isfinite(lv) for lv in levels):
            raise InvalidArgumentError(f"noise levels must be finite and >= 0, got {list(levels)}")
        if any(sh < 0 for sh in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
            raise InvalidArgumentError(f"noise_shares must be >= 0 and sum to 1, got {list(shares)}")
        object.__setattr__(self, "noise_levels", tuple(float(v) for v in levels))
        object.__setattr__(self, "noise_shares", tuple(float(v) for v in shares))
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "poses", tuple(self.poses))

    def level_for(self, index: int, images_per_id: int) -> float:
        """The noise level of image ``index`` of ``images_per_id``: the first 40 % get the first
        level and so on (cumulative shares, rounded, so every image has one)."""
        if not 0 <= index < images_per_id:
            raise InvalidArgumentError(f"image index {index} outside 0..{images_per_id - 1}")
        bound = 0.0
        for level, share in zip(self.noise_levels, self.noise_shares):
            bound += share
            if index < round(bound * images_per_id):
                return level
        return self.noise_levels[-1]


@dataclass(frozen=True, eq=False)
class WorkItem:
    """Everything a generator needs for one image.

    embedding: float32 unit vector (the perturbed identity): a generator whose adapter
    expects raw vectors rescales it to that encoder's usual norm.  ``seed`` seeds the
    generator's noise (``torch.Generator().manual_seed(seed)``).
    """

    identity: int
    index: int
    attempt: int
    seed: int
    embedding: np.ndarray
    noise_level: float
    prompt: str | None = None
    pose: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return sample_key(self.identity, self.index)


def sample_key(identity: int, index: int) -> str:
    """The sample's key in shards and the manifest: ``{identity:06d}_{index:03d}``."""
    return f"{identity:06d}_{index:03d}"


def perturb(base: np.ndarray, level: float, seed: int) -> np.ndarray:
    """``base`` plus Gaussian noise of std ``level * |base| / sqrt(dim)`` per coordinate,
    rescaled to the norm of ``base``.  Computed in float64 with exact sums, so the float32 result is
    bit-identical on every machine."""
    vec = np.asarray(base, dtype=np.float64).reshape(-1)
    norm = math.sqrt(math.fsum(float(v) * float(v) for v in vec))
    if norm == 0:
        raise InvalidArgumentError("cannot perturb a zero identity vector")
    if level == 0:
        return vec.astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal(vec.shape[0])
    out = vec + noise * (level * norm / math.sqrt(vec.shape[0]))
    out_norm = math.sqrt(math.fsum(float(v) * float(v) for v in out))
    return (out * (norm / out_norm)).astype(np.float32)


def _pick(options: Sequence[Any], seed: int) -> Any:
    return options[seed % len(options)] if options else None


def make_work_item(
    run_seed: int,
    identity: int,
    index: int,
    base: np.ndarray,
    images_per_id: int,
    config: VariationConfig | None = None,
    attempt: int = 0,
) -> WorkItem:
    """The work item for image ``index`` of ``identity`` (attempt ``attempt``)."""
    cfg = config or VariationConfig()
    level = cfg.level_for(index, images_per_id)
    embedding = perturb(base, level, derive_seed(run_seed, identity, index, attempt, purpose="noise"))
    return WorkItem(
        identity=int(identity),
        index=int(index),
        attempt=int(attempt),
        seed=derive_seed(run_seed, identity, index, attempt, purpose="image"),
        embedding=embedding,
        noise_level=level,
        prompt=_pick(cfg.prompts, derive_seed(run_seed, identity, index, attempt, purpose="prompt")),
        pose=_pick(cfg.poses, derive_seed(run_seed, identity, index, attempt, purpose="pose")),
    )


def embedding_sha256(vector: np.ndarray) -> str:
    """sha256 of the vector's little-endian float32 bytes (the manifest's embedding hash)."""
    return hashlib.sha256(np.asarray(vector, dtype="<f4").tobytes()).hexdigest()
