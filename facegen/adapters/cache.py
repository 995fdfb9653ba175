"""Conditioning computed once per key and reused: the cache the adapters keep on a pipeline."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from facegen.errors import InvalidArgumentError

T = TypeVar("T")


class ConditioningCache:
    """Conditioning tensors computed once per key (an identity's embedding, the empty prompt)
    and reused across batches.  LRU-bounded, thread-safe (one per pipeline, shared by requests).

        cache = ConditioningCache()
        neg = cache.get(("uncond", "base"), lambda: pipe.encode_prompt("", device, 1, False)[0])
        pos = cache.get(ConditioningCache.key_of(id_vector, "id-prompt"), lambda: project(id_vector))
    """

    def __init__(self, max_items: int = 1024) -> None:
        if max_items < 1:
            raise InvalidArgumentError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key_of(*parts: Any) -> str:
        """A content hash of tensors / arrays / strings / numbers (dtype and shape included)."""
        h = hashlib.sha256()
        for p in parts:
            if isinstance(p, torch.Tensor):
                t = p.detach().to("cpu").contiguous()
                h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            elif isinstance(p, np.ndarray):
                a = np.ascontiguousarray(p)
                h.update(f"A{a.dtype}{a.shape}".encode())
                h.update(a.tobytes())
            else:
                h.update(f"{type(p).__name__}:{p!r}".encode())
            h.update(b"|")
        return h.hexdigest()

    def get(self, key: Any, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = compute()                      # outside the lock: may run a text encoder
        with self._lock:
            self.misses += 1
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
