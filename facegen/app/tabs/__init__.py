"""The registry of job tabs.

A tab is one module exposing ``TITLE``, ``build(ctx) -> None`` (called inside a ``gr.Tab``)
and optionally ``available() -> bool`` for checks finer than "the module exists". A tab is
shown only when every module in ``requires`` is importable and ``available()`` says yes, so
a job appears in the app the moment its pipeline lands. Adding a job = one module here +
one :class:`TabSpec` line in :data:`TABS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from types import ModuleType

logger = logging.getLogger(__name__)


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class TabSpec:
    key: str                      # the tab's id (also its API name prefix)
    title: str
    module: str                   # the tab module (facegen.app.tabs.<key>)
    requires: tuple[str, ...]     # modules the job needs (its pipeline)

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def available(self) -> bool:
        missing = [m for m in self.requires if not module_exists(m)]
        if missing:
            logger.info("tab '%s' hidden: %s not installed", self.title, ", ".join(missing))
            return False
        try:
            mod = self.load()
            check = getattr(mod, "available", None)
            return bool(check()) if check is not None else True
        except Exception as exc:  # noqa: BLE001 - a broken optional job hides its tab, not the app
            logger.warning("tab '%s' hidden: %s: %s", self.title, type(exc).__name__, exc)
            return False


TABS: tuple[TabSpec, ...] = (
    TabSpec("generate", "Generate", "facegen.app.tabs.generate", ("facegen.pipelines.generation",)),
    TabSpec("swap", "Swap", "facegen.app.tabs.swap", ("facegen.pipelines.swap",)),
    TabSpec("age", "Age", "facegen.app.tabs.age", ("facegen.pipelines.aging",)),
    TabSpec("restore", "Restore", "facegen.app.tabs.restore", ("facegen.pipelines.restoration",)),
    TabSpec("dataset", "Dataset", "facegen.app.tabs.dataset", ("facegen.dataset.runner",)),
    TabSpec("inspect", "Inspect", "facegen.app.tabs.inspect", ("facegen.provenance.inspect",)),
    TabSpec("models", "Models", "facegen.app.tabs.models", ()),
)


def available_tabs() -> list[TabSpec]:
    return [t for t in TABS if t.available()]
