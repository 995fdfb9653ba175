"""Families other packages install: the entry points of the group :data:`FAMILY_ENTRY_POINTS`.

An entry point names the module (or a function, which is called) that registers a family exactly
as a built-in one registers: its ``@register_family`` adapter class, its presets
(:func:`facegen.models.registry.register_preset`) and its tiny builder
(``facegen.models.tiny.BUILDERS`` / ``SPECS``).  The registries load them lazily, once.
"""

from __future__ import annotations

from facegen.errors import FacegenError

#: the entry-point group through which another package adds a family
FAMILY_ENTRY_POINTS = "facegen.families"
_plugins_loaded = False


def load_family_plugins() -> None:
    """Load, once per process, the families other packages install (entry points of the group
    :data:`FAMILY_ENTRY_POINTS`, in name order).  A family that fails to load (an import error, a
    name already registered) is a one-line error naming its entry point."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True                      # first: a plugin may list presets while it loads
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=FAMILY_ENTRY_POINTS), key=lambda e: e.name):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
        except Exception as exc:
            raise FacegenError(f"the facegen family '{ep.name}' ({ep.value}, entry point group "
                               f"{FAMILY_ENTRY_POINTS}) failed to load: {type(exc).__name__}: {exc}; "
                               "fix or uninstall that package") from exc


def load_preset_modules() -> None:
    """Import the ``facegen.models.presets_*`` modules (called once, as the registry finishes loading): a
    built-in family may keep its presets in a file of its own, registered on import like the registry's."""
    import importlib
    import pkgutil

    import facegen.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("presets_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
