"""The conditioning cache the adapters keep on a pipeline (facegen.adapters.cache)."""

from __future__ import annotations

import pytest
import torch

from facegen.adapters.cache import ConditioningCache
from facegen.errors import InvalidArgumentError



def test_conditioning_cache_computes_once_per_identity():
    cache = ConditioningCache(max_items=2)
    calls: list[str] = []
    emb = torch.randn(512)

    def compute(tag: str):
        return lambda: calls.append(tag) or tag

    k = ConditioningCache.key_of(emb, "arc2face")
    assert cache.get(k, compute("a")) == "a"
    assert cache.get(ConditioningCache.key_of(emb.clone(), "arc2face"), compute("again")) == "a"
    assert calls == ["a"] and cache.hits == 1 and cache.misses == 1
    assert ConditioningCache.key_of(emb) != ConditioningCache.key_of(emb + 1e-3)
    assert ConditioningCache.key_of(emb) != ConditioningCache.key_of(emb.half())
    assert ConditioningCache.key_of(torch.ones(3, dtype=torch.bfloat16)) == ConditioningCache.key_of(torch.ones(3, dtype=torch.bfloat16))
    cache.get("b", compute("b"))
    cache.get("c", compute("c"))                     # evicts the least recently used (k)
    assert k not in cache and len(cache) == 2
    with pytest.raises(InvalidArgumentError):
        ConditioningCache(max_items=0)
