"""The shape of the code: family knowledge stays in facegen/adapters and facegen/models."""

from __future__ import annotations

import ast
from pathlib import Path

from facegen.adapters.registry import FAMILIES, adapter_class, discover_families
from facegen.models.registry import PRESETS
from facegen.paths import ModelAccess

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


#: the registries: family knowledge (names, display names, presets, encoder packs) is their data
REGISTRY_FILES = (PACKAGE / "id" / "registry.py",)


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def _user_texts(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module but its docstrings (f-string parts included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def family_words(families: dict) -> list[str]:
    """Family names and the display names of each family (``display_names``: its parts too)."""
    words = set(families)
    for cls in families.values():
        words.update(cls.display_names)
    return sorted(words, key=len, reverse=True)


def family_text_offenders(files, families, root: Path = PACKAGE.parent) -> list[str]:
    import re

    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in family_words(families)) + r")(?![\w-])",
                         re.IGNORECASE)
    offenders = []
    for path in files:
        for line, value in _user_texts(path):
            if value not in PRESETS and (m := pattern.search(value)):
                offenders.append(f"{path.relative_to(root)}:{line} {m.group(0)!r} in {value[:60]!r}")
    return offenders


def test_no_family_name_outside_adapters_and_models():
    """No user-facing text outside the registries names a family, by its registry name or by the
    names people know it by (``display_names``): ask the capability query instead
    (:func:`facegen.adapters.registry.presets_that`).  A preset's own name is registry data."""
    families = discover_families()
    assert set(families) == set(FAMILIES) and len(families) >= 3
    assert all(cls.display_names for cls in families.values()), "give every family its display_names"
    files = [p for p in PACKAGE.rglob("*.py")
             if not any(home in p.parents for home in FAMILY_HOMES) and p not in REGISTRY_FILES]
    files.append(PACKAGE.parent / "app.py")
    offenders = family_text_offenders(files, families)
    assert not offenders, "family names outside the registries (ask a capability): " + "; ".join(offenders)


def test_the_family_name_scan_finds_display_names_in_messages(tmp_path):
    """The scan itself: a display name in an f-string message is found, a docstring is not read."""
    bad = tmp_path / "facegen" / "mod.py"
    bad.parent.mkdir()
    bad.write_text('"""Docs may say InstantID."""\nx = f"takes no pose (instantid presets do) {1}"\n', encoding="utf-8")
    found = family_text_offenders([bad], discover_families(), root=tmp_path)
    assert len(found) == 1 and "instantid" in found[0]


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

    def fake_get_analyzer(name, access=None, providers=None):
        seen.append((name, access.models_dir, access.accept_license))
        raise LicenseNotAcceptedError("licence not accepted")
    monkeypatch.setattr(M, "get_analyzer", fake_get_analyzer)
    ref = IDEmbedding(np.ones(512, np.float32), "buffalo_l-w600k-r50")
    assert M.id_similarity(ref, np.zeros((64, 64, 3), np.uint8), access=ModelAccess("/models")) is None
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


def test_model_access_is_the_one_way_to_reach_models():
    """Issue 24 part 6: the models folder, the licence acceptance and the device travel as one
    ModelAccess; no function of the package takes ``models_dir`` / ``accept_license`` any more
    (the dataset spec keeps them as its runtime fields, and builds its access from them)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                bad = sorted({a.arg for a in args} & {"models_dir", "accept_license"})
                if bad:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}({', '.join(bad)})")
    assert not offenders, "pass a facegen.paths.ModelAccess instead: " + "; ".join(offenders)
    access = ModelAccess(Path("/models"), accept_license=1, device="cpu")   # type: ignore[arg-type]
    assert access.models_dir == "/models" and access.accept_license is True and access.root == Path("/models")
    assert hash(access) == hash(ModelAccess("/models", True, "cpu"))          # a cache key
    assert ModelAccess("").models_dir is None
