"""The shape of the code: family knowledge stays in facegen/adapters and facegen/models."""

from __future__ import annotations

import ast
from pathlib import Path

from facegen.adapters.registry import FAMILIES, adapter_class, discover_families
from facegen.models.registry import PRESETS

PACKAGE = Path(__file__).resolve().parents[1] / "facegen"
FAMILY_HOMES = (PACKAGE / "adapters", PACKAGE / "models")


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_every_presets_family_is_a_registered_adapter():
    families = discover_families()
    assert {p.family for p in PRESETS.values()} <= set(families)
    for name, cls in families.items():
        assert cls.family == name and adapter_class(name) is cls


def test_no_family_name_outside_adapters_and_models():
    names = set(discover_families())
    assert names == set(FAMILIES) and len(names) >= 3
    offenders = []
    files = [p for p in PACKAGE.rglob("*.py") if not any(home in p.parents for home in FAMILY_HOMES)]
    files.append(PACKAGE.parent / "app.py")
    for path in files:
        for line, value in _string_constants(path):
            if value in names:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} {value!r}")
    assert not offenders, "family names outside facegen/adapters and facegen/models (ask a capability): " \
        + "; ".join(offenders)


def test_an_unknown_family_is_a_clear_error():
    import pytest

    from facegen.errors import FacegenError

    with pytest.raises(FacegenError, match="no adapter family 'nope'; registered: "):
        adapter_class("nope")


def test_id_similarity_never_accepts_a_licence_for_the_user(monkeypatch):
    import numpy as np

    import facegen.metrics as M
    from facegen.errors import LicenseNotAcceptedError
    from facegen.id.embedding import IDEmbedding

    seen = []

    def fake_get_analyzer(name, models_dir=None, providers=None, accept_license=False):
        seen.append((name, models_dir, accept_license))
        raise LicenseNotAcceptedError("licence not accepted")
    monkeypatch.setattr(M, "get_analyzer", fake_get_analyzer)
    ref = IDEmbedding(np.ones(512, np.float32), "buffalo_l-w600k-r50")
    assert M.id_similarity(ref, np.zeros((64, 64, 3), np.uint8), models_dir="/models") is None
    assert seen == [("buffalo_l-w600k-r50", "/models", False)]


def test_no_deprecated_alias_or_shim_left():
    """0.1.0 was never released: a rename moves its call sites, it leaves no alias, shim or re-export behind."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines(), 1):
            if "DeprecationWarning" in line or "deprecated" in line.lower() or "re-export" in line.lower():
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{i}")
            if "F401" in line and path.name != "__init__.py":
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{i} (an unused import kept for callers)")
    assert not offenders, "finish the move (call sites to the new name), no alias: " + "; ".join(offenders)


def test_one_face_template_and_no_family_imports_another():
    """Pose geometry and the face template live in facegen/faces: the ArcFace 5-point numbers are
    written once, and no module imports a family's module for its geometry."""
    copies = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if "38.2946" in p.read_text()]
    assert copies == ["facegen/faces/align.py"], copies
    family_modules = {cls.__module__ for cls in discover_families().values()}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        mod = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in family_modules and node.module != mod:
                offenders.append(f"{mod} imports {node.module}")
    assert not offenders, "take shared geometry from facegen.faces, not from a family: " + "; ".join(offenders)
