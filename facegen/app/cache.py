"""Load each pipeline once per (job, preset) and share it between requests, thread-safely."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class PipelineCache:
    """A dict of loaded pipelines keyed by ``(job, preset)``.

    Two requests for the same key load it once (the second waits for the first); different
    keys load in parallel. A failed load is not cached, so fixing the weights folder and
    retrying works without a restart.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Any] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, job: str, preset: str, load: Callable[[], T]) -> T:
        key = (job, preset)
        with self._guard:
            if key in self._items:
                return self._items[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._items:
                    return self._items[key]
            t0 = time.perf_counter()
            item = load()
            logger.info("loaded the %s pipeline for preset '%s' in %.1f s", job, preset,
                        time.perf_counter() - t0)
            with self._guard:
                self._items[key] = item
            return item

    def loaded(self) -> list[tuple[str, str]]:
        with self._guard:
            return sorted(self._items)

    def __contains__(self, key: object) -> bool:
        with self._guard:
            return key in self._items
