"""The registry of job tabs.

A tab is one module exposing ``TITLE`` and ``build(ctx) -> None`` (called inside a
``gr.Tab``), imported here by a plain import: a broken tab module fails loudly at start, it is
never hidden.  Adding a job = one module here + one :class:`TabSpec` line in :data:`TABS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from facegen.app.tabs import age, dataset, generate, inspect, models, restore, swap


@dataclass(frozen=True)
class TabSpec:
    key: str                      # the tab's id (also its API name prefix)
    title: str
    module: ModuleType            # the tab module (facegen.app.tabs.<key>)

    def load(self) -> ModuleType:
        return self.module

    def available(self) -> bool:
        """Every tab's job ships with facegen; a tab may still say no (``available()``)."""
        check = getattr(self.module, "available", None)
        return bool(check()) if check is not None else True


TABS: tuple[TabSpec, ...] = tuple(TabSpec(key, m.TITLE, m) for key, m in (
    ("generate", generate), ("swap", swap), ("age", age), ("restore", restore), ("dataset", dataset),
    ("inspect", inspect), ("models", models)))


def available_tabs() -> list[TabSpec]:
    return [t for t in TABS if t.available()]
