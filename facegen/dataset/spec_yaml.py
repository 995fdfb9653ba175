"""The safe reading of a dataset spec file: UTF-8 YAML of bounded size and depth, without
anchors and aliases (an "alias bomb" expands a few hundred bytes to gigabytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from facegen.dataset.spec_checks import DEFAULT_LIMITS, LIMITS_ENV, dataset_limits
from facegen.errors import InvalidArgumentError
from facegen.io.files import read_bytes


class _SpecRefused(Exception):
    """A spec file construct refused while it is read (turned into an InvalidArgumentError)."""


class _SpecLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases (a few hundred bytes of nested aliases
    expand to gigabytes: an "alias bomb") and with a cap on nesting depth."""

    max_depth = int(DEFAULT_LIMITS["spec_depth"])

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else "?"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _SpecRefused(f"line {line}: YAML anchors and aliases (&, *, <<) are not allowed in a dataset spec; "
                               "write the values out")
        nested = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if nested:
            self._depth = getattr(self, "_depth", 0) + 1
            if self._depth > self.max_depth:
                raise _SpecRefused(f"line {line}: nested more than {self.max_depth} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


def load_spec_yaml(path: str | Path) -> Any:
    """The data of a spec file: UTF-8 YAML of at most ``spec_bytes``, no aliases, bounded depth."""
    p = Path(path)
    limits = dataset_limits()
    # a regular file (never a FIFO or device), read up to the spec limit (facegen.io.files)
    raw = read_bytes(p, what="dataset spec", max_bytes=int(limits["spec_bytes"]), error=InvalidArgumentError,
                     governed_by=f"{LIMITS_ENV} spec_bytes=")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"{p} is not a text file (not UTF-8): a dataset spec is YAML text") from None
    if "\x00" in text:
        raise InvalidArgumentError(f"{p} is not a text file (it holds NUL bytes): a dataset spec is YAML text")
    depth = min(int(limits["spec_depth"]), 100)             # YAML composes nodes recursively
    loader = type("_Loader", (_SpecLoader,), {"max_depth": depth})(text)
    try:
        return loader.get_single_data()
    except _SpecRefused as exc:
        raise InvalidArgumentError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"{p} is not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()

