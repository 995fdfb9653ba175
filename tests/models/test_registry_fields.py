"""Every registry field is read: encoder, preset, sampler, component, auxiliary, licence and crop
entries; tiny presets derived from their real twin; one licence table; auxiliary weights located
through their entries."""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from facegen.errors import FacegenError, InvalidArgumentError, ModelNotFoundError
from facegen.faces.align import CROP_TEMPLATES, CropTemplate, crop_template, warp_face
from facegen.id.registry import ENCODERS, EncoderSpec, get_encoder_spec, register_encoder
from facegen.models.auxiliary import AUXILIARY, AuxiliaryWeights, WeightFile, get_auxiliary
from facegen.models.licences import LICENCES, Licence, commercial_use, licence_text
from facegen.models.registry import (PRESETS, TINY_REPOS, Component, Preset, SamplerDefaults, tiny_twin,
                                     tiny_twin_of)
from facegen.paths import ModelAccess

PACKAGE = Path(__file__).resolve().parents[2] / "facegen"
GOLDEN_TINY = Path(__file__).resolve().parents[1] / "golden" / "tiny_presets.json"
REGISTRY_CLASSES = (EncoderSpec, Preset, SamplerDefaults, Component, WeightFile, AuxiliaryWeights, Licence,
                    CropTemplate)


#: how the code names a registry entry it reads a field of: a field whose name other objects carry
#: too (``name``, ``files``, ``template``...) counts as read only where the object read is named so
HINTS: dict[type, str] = {
    EncoderSpec: r"spec|encoder|\benc\b|entry|ENCODERS",
    Preset: r"preset|\bp\b|twin|real|tiny|PRESETS",
    SamplerDefaults: r"defaults|\bd\b",
    Component: r"comp|\bc\b",
    WeightFile: r"weight|\bw\b|\bf\b|file",
    AuxiliaryWeights: r"aux|entry|weights|^[A-Z][A-Z0-9_]*$",
    Licence: r"licen[cs]e|\blic\b|\bl\b|LICENCES",
    CropTemplate: r"template|crop|\bt\b",
}


def attribute_reads(package: Path, cls: type) -> list[tuple[str, str]]:
    """``(field, object expression)`` of every ``x.field`` read, ``getattr(x, "field")`` and
    ``for k in ("a", "b"): getattr(x, k)`` in the package, but ``self.field`` inside ``cls`` itself."""
    reads: list[tuple[str, str]] = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = {id(n) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == cls.__name__
               for n in ast.walk(node)}
        loops = {}                                    # loop variable -> the names it runs over
        for node in ast.walk(tree):
            if (isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple)
                    and all(isinstance(e, ast.Constant) for e in node.iter.elts)):
                loops[node.target.id] = [str(e.value) for e in node.iter.elts]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                if not (id(node) in own and isinstance(node.value, ast.Name) and node.value.id == "self"):
                    reads.append((node.attr, ast.unparse(node.value)))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2):
                key = node.args[1]
                names = [str(key.value)] if isinstance(key, ast.Constant) else \
                    loops.get(key.id, []) if isinstance(key, ast.Name) else []
                reads += [(n, ast.unparse(node.args[0])) for n in names]
    return reads


def common_names(package: Path, classes=REGISTRY_CLASSES) -> set[str]:
    """Field names of more than one registry class, or attributes of any other class of the package."""
    counts: dict[str, int] = {}
    for c in classes:
        for f in dataclasses.fields(c):
            counts[f.name] = counts.get(f.name, 0) + 1
    other = {"name", "size", "files", "path", "shape", "dtype"}
    names = {c.__name__ for c in classes}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name not in names:
                other |= {st.target.id for st in node.body
                          if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id == "self"):
                other.add(node.attr)
    return {n for n, k in counts.items() if k > 1} | other


def unread_fields(cls: type, package: Path = PACKAGE, hint: str | None = None, common: set[str] | None = None
                  ) -> list[str]:
    """The dataclass fields of ``cls`` nothing reads (a common name: nothing reads off an object
    named as ``cls``'s entries are, :data:`HINTS`)."""
    import re

    hint = HINTS[cls] if hint is None else hint
    common = common_names(package) if common is None else common
    reads = attribute_reads(package, cls)
    return [f.name for f in dataclasses.fields(cls)
            if not any(attr == f.name and (f.name not in common or re.search(hint, obj)) for attr, obj in reads)]


@pytest.mark.parametrize("cls", REGISTRY_CLASSES, ids=lambda c: c.__name__)
def test_every_registry_field_has_a_reader(cls):
    assert not unread_fields(cls), f"{cls.__name__} fields nothing reads: {unread_fields(cls)}"


def test_the_field_scan_finds_an_unread_field(tmp_path, monkeypatch):
    """A field read only by its own class, or (a common name) only off unrelated objects, is unread."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "entries.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass Entry:\n"
        "    used: int\n    dead: int\n    name: str\n    size: int\n\n"
        "    def own(self):\n        return self.dead\n")
    (pkg / "user.py").write_text("def use(entry, photo):\n    for k in ('size',):\n        getattr(entry, k)\n"
                                 "    return entry.used, photo.name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from fakepkg.entries import Entry   # noqa: PLC0415

    try:
        assert unread_fields(Entry, pkg, hint=r"entry", common={"name", "size"}) == ["dead", "name"]
    finally:
        sys.modules.pop("fakepkg.entries", None)
        sys.modules.pop("fakepkg", None)


# ----------------------------------------------------------------------------- tiny twins

def test_tiny_presets_are_exactly_as_recorded_before_they_were_derived():
    recorded = json.loads(GOLDEN_TINY.read_text())
    now = {n: json.loads(json.dumps(dataclasses.asdict(p))) for n, p in PRESETS.items() if p.tiny}
    assert now == recorded


def test_each_tiny_preset_is_derived_from_its_real_twin():
    for tiny in (p for p in PRESETS.values() if p.tiny):
        real = PRESETS[tiny.twin]
        assert tiny_twin(real.name) is tiny
        assert tiny_twin_of(real, tiny.name, tiny.description) == tiny
        assert [(c.role, c.files) for c in tiny.components] == [(c.role, c.files) for c in real.components]
        assert [c.repo for c in tiny.components] == [TINY_REPOS[c.repo] for c in real.components]
        assert (tiny.family, tiny.base, tiny.normalise) == (real.family, real.base, real.normalise)


def test_a_twin_with_an_unknown_repository_is_a_clear_error():
    real = PRESETS["instantid"]
    odd = dataclasses.replace(real, components=(dataclasses.replace(real.components[0], repo="someone/else"),))
    with pytest.raises(InvalidArgumentError, match="someone/else"):
        tiny_twin_of(odd, "tiny-odd", "x")


# ----------------------------------------------------------------------------- one licence table

def _licensed_things():
    yield from (("preset", p.name, p.licence, p.commercial_use) for p in PRESETS.values())
    yield from (("encoder", e.name, e.licence, e.commercial_use) for e in ENCODERS.values())
    yield from (("auxiliary", a.name, a.licence, a.commercial_use) for a in AUXILIARY.values())


def _table_keys(licence: str) -> list[str] | None:
    """The table entries whose sentences, joined with "; ", make ``licence`` (None: none do)."""
    for lic in LICENCES.values():
        if licence == lic.text:
            return [lic.name]
        if licence.startswith(lic.text + "; "):
            rest = _table_keys(licence[len(lic.text) + 2:])
            if rest is not None:
                return [lic.name, *rest]
    return None


def test_every_licence_is_composed_from_the_table():
    assert len({lic.text for lic in LICENCES.values()}) == len(LICENCES), "two licence entries share a sentence"
    for kind, name, licence, commercial in _licensed_things():
        keys = _table_keys(licence)
        assert keys, f"{kind} {name}: licence not from the table: {licence!r}"
        assert licence == licence_text(*keys) and commercial == commercial_use(*keys), f"{kind} {name}"


def test_each_licence_sentence_is_written_once_in_the_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "licences.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                offenders += [f"{path.name}: {lic.name}" for lic in LICENCES.values() if lic.text in node.value]
    assert not offenders


def test_licence_table_refuses_unknown_or_empty():
    with pytest.raises(FacegenError, match="unknown licence 'nope'; choose one of"):
        licence_text("nope")
    with pytest.raises(FacegenError):
        commercial_use()


# ----------------------------------------------------------------------------- the template drives alignment

def test_encoder_templates_are_registered_crops_of_their_size():
    for spec in ENCODERS.values():
        crop = crop_template(spec.template)
        assert crop.size == spec.crop_size
        assert (crop.template is None) == (spec.backend == "dlib")      # dlib aligns its own chip
    with pytest.raises(FacegenError, match="unknown crop template 'arcface113'; choose one of"):
        crop_template("arcface113")


def test_registering_an_encoder_checks_its_template():
    spec = get_encoder_spec("buffalo_l-w600k-r50")
    with pytest.raises(FacegenError, match="unknown crop template"):
        register_encoder(dataclasses.replace(spec, name="typo-enc", template="arcfase112"))
    with pytest.raises(FacegenError, match="crops 112 px, but crop_size is 128"):
        register_encoder(dataclasses.replace(spec, name="size-enc", crop_size=128))
    assert "typo-enc" not in ENCODERS and "size-enc" not in ENCODERS


class _Session:
    def __init__(self, size, fed):
        self.size, self.fed = size, fed

    def get_inputs(self):
        return [SimpleNamespace(name="input.1", shape=[None, 3, self.size, self.size])]

    def run(self, _names, feeds):
        self.fed.append(feeds["input.1"])
        return [np.ones((feeds["input.1"].shape[0], 512), np.float32)]


def test_the_onnx_encoder_crops_on_its_entrys_template(tmp_path, monkeypatch):
    from facegen.id.encoders import OnnxArcFaceEncoder, build_analyzer

    monkeypatch.setitem(CROP_TEMPLATES, "ffhq112", CropTemplate("ffhq112", "ffhq", 112))

    (tmp_path / "buffalo_l").mkdir()
    (tmp_path / "buffalo_l" / "w600k_r50.onnx").write_bytes(b"fake")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    kps = np.array([[120, 130], [180, 130], [150, 165], [125, 200], [175, 200]], np.float32)
    from facegen.faces.types import Face
    face = Face(np.array([90, 90, 210, 230], np.float32), kps, 0.9)
    base = get_encoder_spec("buffalo_l-w600k-r50")
    for spec in (base, dataclasses.replace(base, template="arcface128", crop_size=128),
                 dataclasses.replace(base, template="ffhq112")):          # another layout, same size
        fed: list[np.ndarray] = []
        enc = build_analyzer(spec, ModelAccess(tmp_path, accept_license=True),
                                 session_factory=lambda p, providers, s=spec.crop_size: _Session(s, fed))
        enc.embed(img, face)
        crop, _ = warp_face(img, kps, spec.crop_size, crop_template(spec.template).template or "arcface")
        assert fed[0].shape == (1, 3, spec.crop_size, spec.crop_size)
        assert np.allclose(fed[0][0].transpose(1, 2, 0), (crop.astype(np.float32) - 127.5) / 127.5)
    with pytest.raises(FacegenError, match="needs a warped crop template"):
        OnnxArcFaceEncoder(dataclasses.replace(base, template="dlib-chip150", crop_size=150),
                           ModelAccess(tmp_path, accept_license=True),
                           session_factory=lambda p, providers: _Session(150, []))


# ----------------------------------------------------------------------------- auxiliary weights

def test_auxiliary_entries_carry_files_licence_and_only_known_hashes():
    assert {"antelopev2", "buffalo_l", "inswapper_128", "gfpgan-v1.4"} <= set(AUXILIARY)
    for entry in AUXILIARY.values():
        assert entry.files and entry.licence and entry.purpose
        for f in entry.files:
            assert f.sha256 is None or (len(f.sha256) == 64 and int(f.sha256, 16) >= 0)
        if entry.template:
            assert entry.template in CROP_TEMPLATES
        if entry.encoder:
            assert entry.encoder in ENCODERS
    with pytest.raises(FacegenError, match="unknown auxiliary weights 'nope'; choose one of"):
        get_auxiliary("nope")


def test_insightface_packs_and_encoders_share_their_entries():
    from facegen.faces.insightface_backend import PACK_DETECTORS

    assert PACK_DETECTORS == {"antelopev2": "scrfd_10g_bnkps.onnx", "buffalo_l": "det_10g.onnx"}
    for spec in ENCODERS.values():
        # the encoders that run a pack's own recognition network (not Arc2Face's or InfiniteYou's,
        # which pair another network with the pack's detector)
        if spec.detector_pack in ("antelopev2", "buffalo_l") and spec.files[0].relpath.startswith(spec.detector_pack):
            assert spec.files == (get_auxiliary(spec.detector_pack).file("recognition"),)
            assert spec.licence == get_auxiliary(spec.detector_pack).licence


def test_scrfd_finds_its_detector_through_the_pack_entry(tmp_path):
    from facegen.faces.insightface_backend import SCRFDDetector

    with pytest.raises(ModelNotFoundError, match="det_10g.onnx") as err:
        SCRFDDetector.find_model(tmp_path / "buffalo_l", "buffalo_l")
    assert "insightface model zoo" in str(err.value)         # the entry's hint
    (tmp_path / "buffalo_l").mkdir()
    (tmp_path / "buffalo_l" / "det_10g.onnx").write_bytes(b"fake")
    assert SCRFDDetector.find_model(tmp_path / "buffalo_l", "buffalo_l") == tmp_path / "buffalo_l" / "det_10g.onnx"


def test_inswapper_is_located_and_checked_through_its_entry(tmp_path, monkeypatch):
    import facegen.pipelines.inswapper as insw

    assert (insw.CROP, insw.INSWAPPER_ENCODER) == (128, "buffalo_l-w600k-r50")     # from the entry
    with pytest.raises(ModelNotFoundError, match="buffalo_l pack"):
        insw.find_inswapper(ModelAccess(tmp_path))
    (tmp_path / "inswapper").mkdir()
    (tmp_path / "inswapper" / "inswapper_128.onnx").write_bytes(b"fake")        # the entry's alternative
    assert insw.find_inswapper(ModelAccess(tmp_path)) == tmp_path / "inswapper" / "inswapper_128.onnx"
    pinned = dataclasses.replace(insw.INSWAPPER, files=(dataclasses.replace(
        insw.INSWAPPER.file("swapper"), sha256="0" * 64),))
    monkeypatch.setattr(insw, "INSWAPPER", pinned)
    with pytest.raises(ModelNotFoundError, match="sha256"):
        insw.find_inswapper(ModelAccess(tmp_path))


def test_gfpgan_pass_reads_its_entry(tmp_path):
    import importlib.util

    from facegen.errors import MissingDependencyError
    from facegen.pipelines.restoration import GFPGAN, gfpgan_pass

    rgb = np.zeros((8, 8, 3), np.uint8)
    if importlib.util.find_spec("gfpgan") is None:
        with pytest.raises(MissingDependencyError, match="gfpgan"):
            gfpgan_pass(rgb, ModelAccess(tmp_path))
    else:
        with pytest.raises(ModelNotFoundError, match="GFPGANv1.4.pth"):
            gfpgan_pass(rgb, ModelAccess(tmp_path))
    assert GFPGAN.file("restorer").relpath == "gfpgan/GFPGANv1.4.pth" and GFPGAN.package == "gfpgan"


def test_doctor_reports_each_auxiliary_entry(tmp_path):
    from facegen.cli.doctor import doctor_report

    aux = doctor_report(ModelAccess(str(tmp_path)))["auxiliary"]
    assert set(aux) == set(AUXILIARY)
    assert aux["inswapper_128"]["ready"] is False
    assert aux["inswapper_128"]["missing"] == ["inswapper_128.onnx or inswapper/inswapper_128.onnx"]
    assert aux["inswapper_128"]["licence"] == get_auxiliary("inswapper_128").licence
    (tmp_path / "inswapper_128.onnx").write_bytes(b"fake")
    assert doctor_report(ModelAccess(str(tmp_path)))["auxiliary"]["inswapper_128"]["ready"] is True
