"""The adapter-family registry: each family registers its class (timm's ``register_model`` idea).

A family is one module in :mod:`facegen.adapters` whose :class:`~facegen.adapters.base.IDAdapter`
subclass carries ``@register_family``; the module is found by listing this package, so adding a
family is its file (plus its presets in :mod:`facegen.models.registry` and its tiny builder):
nothing outside ``facegen/adapters`` and ``facegen/models`` names it.  Callers ask the adapter
for its capabilities (``supports_prompt``, ``supports_control_kps``, ``face_layouts``, its
inpainting pipeline...), never for its family name.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from facegen.adapters.base import IDAdapter
from facegen.errors import InvalidArgumentError
from facegen.models.registry import Preset

A = TypeVar("A", bound=type[IDAdapter])

FAMILIES: dict[str, type[IDAdapter]] = {}
#: modules of this package that hold shared machinery, not a family
_NOT_FAMILIES = frozenset({"base", "batching", "cache", "regions", "registry"})
_discovered = False


def register_family(cls: A) -> A:
    """Class decorator: register an adapter family under its ``family`` name (collisions refused)."""
    name = cls.family
    if name in FAMILIES and FAMILIES[name] is not cls:
        raise InvalidArgumentError(f"adapter family '{name}' is already registered by {FAMILIES[name].__name__}")
    FAMILIES[name] = cls
    return cls


def discover_families() -> dict[str, type[IDAdapter]]:
    """Import every family module of this package once (plain imports: a broken family fails loudly)."""
    global _discovered
    if not _discovered:
        import facegen.adapters as pkg

        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name not in _NOT_FAMILIES and not info.name.startswith("_"):
                importlib.import_module(f"{pkg.__name__}.{info.name}")
        _discovered = True
    return FAMILIES


def adapter_class(family: str) -> type[IDAdapter]:
    """The registered adapter class of ``family``."""
    families = discover_families()
    try:
        return families[family]
    except KeyError:
        raise InvalidArgumentError(
            f"no adapter family '{family}'; registered: {', '.join(sorted(families))}") from None


def adapter_for(preset: Preset) -> IDAdapter:
    """The adapter object of a preset."""
    return adapter_class(preset.family)(preset)
