"""The architecture holds (docs/architecture.md): each layer imports only from layers below it
(or its own), and no module does several jobs (at most 450 lines).

Every ``import`` of a facegen module counts, including the ones inside functions: a deferred
import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facegen"
MAX_LINES = 450

#: facegen's top-level modules and packages, bottom (0) to top, as in docs/architecture.md
LAYERS: dict[str, int] = {
    # ground floor
    "facegen": 0, "errors": 0, "paths": 0, "limits": 0, "onnx_runtime": 0, "quality": 0, "examples": 0, "numerics": 0,
    # files in and out: images, metadata, credentials, watermark, atomic writes
    "io": 1, "provenance": 1,
    "models": 2,
    "faces": 3,
    "id": 4, "metrics": 4,
    "edit": 5,
    "adapters": 6,
    "speed": 7,
    "pipelines": 8,
    "video": 9,
    "dataset": 10,
    "fr": 11,
    "app": 12,
    "cli": 13, "__main__": 13,
}


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "facegen":
        raise ValueError(module)
    if len(parts) == 1:
        return "facegen"
    name = parts[1]
    return "cli" if name.startswith("cli_") else name


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported facegen unit) of every facegen import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:                                   # relative: resolve against this package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "facegen":
                out += [(node.lineno, _unit(f"facegen.{a.name}")) for a in node.names if a.name in LAYERS]
            elif mod.startswith("facegen."):
                out.append((node.lineno, _unit(mod)))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, _unit(a.name)) for a in node.names if a.name.startswith("facegen.")]
    return out


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_top_level_module_has_a_layer():
    units = {_unit(_module_name(p)) for p in _modules()}
    assert not units - set(LAYERS), f"give these a layer in LAYERS and docs/architecture.md: {units - set(LAYERS)}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in _modules():
        src = _unit(_module_name(path))
        for line, tgt in _imports(path):
            if LAYERS[tgt] > LAYERS[src]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({src}, layer {LAYERS[src]}) "
                              f"imports {tgt} (layer {LAYERS[tgt]})")
    assert not upward, "imports reaching up a layer:\n" + "\n".join(upward)


def test_no_module_is_over_the_size_limit():
    big = {str(p.relative_to(PACKAGE.parent)): n for p in _modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"


@pytest.mark.parametrize("source, expected", [
    ("from facegen.dataset.writers import x\n", ["dataset"]),
    ("def f():\n    import facegen.app.server\n", ["app"]),
    ("from facegen import __version__, io\n", ["io"]),
    ("from .registry import x\n", ["adapters"]),
])
def test_the_import_finder_sees_every_form(tmp_path, source, expected, monkeypatch):
    """The checker itself: module-level, deferred, package-attribute and relative imports."""
    pkg = tmp_path / "facegen" / "adapters"
    pkg.mkdir(parents=True)
    f = pkg / "mod.py"
    f.write_text(source, encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "facegen")
    assert [u for _, u in _imports(f)] == expected
