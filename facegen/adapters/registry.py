"""The adapter-family registry: each family registers its class (timm's ``register_model`` idea).

A family is one module in :mod:`facegen.adapters` whose :class:`~facegen.adapters.base.IDAdapter`
subclass carries ``@register_family``; the module is found by listing this package, so adding a
family is its file (plus its presets in :mod:`facegen.models.registry` and its tiny builder):
nothing outside ``facegen/adapters`` and ``facegen/models`` names it.  Another package adds a
family the same way from outside: an entry point in the group ``facegen.families``
(:func:`facegen.models.plugins.load_family_plugins`) names its module, which registers its
adapter class, presets and tiny builder on import.  Callers ask the adapter
for its capabilities (``supports_prompt``, ``supports_control_kps``, ``face_layouts``, its
inpainting pipeline...), never for its family name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from facegen.adapters.base import IDAdapter
from facegen.errors import InvalidArgumentError
from facegen.models.plugins import load_family_plugins
from facegen.models.registry import PRESETS, Preset

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
        load_family_plugins()                      # families other packages install (entry points)
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


def presets_that(can: Callable[[type[IDAdapter]], bool], tiny: bool | None = None) -> list[str]:
    """The one capability query: the registered presets whose adapter ``can`` (a test on the
    adapter class's capabilities), sorted; ``tiny`` True/False keeps only the tiny twins / the
    real presets.  Every refusal and list that names "the presets that can" asks this, so none
    lists a family or a preset by hand."""
    discover_families()
    return sorted(name for name, p in PRESETS.items()
                  if (tiny is None or p.tiny == tiny) and can(adapter_class(p.family)))


def refusal(preset: str, cannot: str, can: Callable[[type[IDAdapter]], bool]) -> str:
    """The one-line refusal of a preset that ``cannot`` do something, naming the presets that can."""
    names = presets_that(can)
    return f"preset '{preset}' {cannot}; presets that can: {', '.join(names) if names else 'none'}"


def people_presets(n: int = 2) -> list[str]:
    """The registered presets whose family places at least ``n`` people in one image."""
    return presets_that(lambda a: a.max_people >= n)


def people_refusal(preset: str, n: int, most: int) -> str:
    """The one-line refusal of ``n`` people by a preset that places at most ``most``."""
    can = people_presets(n)
    what = "one person per image (no region masks)" if most < 2 else f"at most {most} people per image"
    return (f"preset '{preset}' places {what}, got {n}; presets that take {n} people: "
            + (", ".join(can) if can else "none"))


def check_people(preset: Preset, n: int, placed: bool = False) -> None:
    """Refuse ``n`` people (``placed``: region masks or a layout asked even for one) with a preset
    that cannot place them: the one check behind the API, the CLI and the app."""
    adapter = adapter_class(preset.family)
    if (n > 1 or placed) and (not adapter.supports_masks or n > adapter.max_people):
        raise InvalidArgumentError(people_refusal(preset.name, max(n, 2), adapter.max_people))
