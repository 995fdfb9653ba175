"""Auxiliary weights: the files beside the presets (face detectors and recognisers, the fast
swapper, the optional restorer), as registry entries like the presets' (facefusion model sets).

Each entry names its files (relative to the models directory, with the other accepted places),
licence (from :mod:`facegen.models.licences`) and sha256 where it is known (None where it is
not: facegen never invents a pin).  The code that locates a file reads its entry here, and so
does ``facegen doctor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError
from facegen.models.eva_clip import EVA_FILE, EVA_REPO, PARSING_FILE, PARSING_URL
from facegen.models.licences import commercial_use, licence_text


@dataclass(frozen=True)
class WeightFile:
    """A weight file an entry needs, relative to the models directory.

    role: what the file is inside its entry (``detector``, ``recognition``, ``swapper``,
        ``restorer``); "" when the entry has one file.
    ``alternatives`` are other accepted places (e.g. the hub layout of the repository that
    ships it), tried in order after ``relpath``.
    """

    relpath: str
    sha256: str | None = None
    url: str | None = None  # where a user fetches it (hub repo/file or release URL), for messages
    alternatives: tuple[str, ...] = ()
    role: str = ""

    def candidates(self) -> tuple[str, ...]:
        """Every accepted place, in the order they are tried."""
        return (self.relpath, *self.alternatives)

    def locate(self, root: "Path") -> "Path | None":
        """The first existing candidate under ``root``, else None."""
        for rel in self.candidates():
            if (root / rel).is_file():
                return root / rel
        return None


@dataclass(frozen=True)
class AuxiliaryWeights:
    """One auxiliary entry.

    purpose: what facegen uses it for (shown by ``facegen doctor``).
    template: the crop the network takes (a :data:`facegen.faces.align.CROP_TEMPLATES` name).
    encoder: the ID-encoder entry whose embeddings the network accepts.
    package: the Python package needed to run it (None: onnxruntime, a core dependency).
    hint: how to get the files, for the missing-file message.
    """

    name: str
    purpose: str
    files: tuple[WeightFile, ...]
    licence: str
    commercial_use: bool
    template: str | None = None
    encoder: str | None = None
    package: str | None = None
    hint: str = ""

    def file(self, role: str) -> WeightFile:
        for f in self.files:
            if f.role == role:
                return f
        raise InvalidArgumentError(f"auxiliary weights '{self.name}' have no '{role}' file")


AUXILIARY: dict[str, AuxiliaryWeights] = {}


def register_auxiliary(entry: AuxiliaryWeights) -> AuxiliaryWeights:
    if entry.name in AUXILIARY:
        raise InvalidArgumentError(f"auxiliary weights '{entry.name}' are already registered")
    AUXILIARY[entry.name] = entry
    return entry


def get_auxiliary(name: str) -> AuxiliaryWeights:
    try:
        return AUXILIARY[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown auxiliary weights '{name}'; choose one of: {', '.join(sorted(AUXILIARY))}") from None


def auxiliary_status(root: Path) -> dict[str, dict[str, Any]]:
    """For ``facegen doctor``: which auxiliary entries have all their files under ``root``."""
    import importlib.util  # noqa: PLC0415

    report: dict[str, dict[str, Any]] = {}
    for name, entry in AUXILIARY.items():
        missing = [" or ".join(f.candidates()) for f in entry.files if f.locate(root) is None]
        package_ok = entry.package is None or importlib.util.find_spec(entry.package) is not None
        report[name] = {"ready": not missing and package_ok, "missing": missing,
                        "package": entry.package, "package_installed": package_ok,
                        "purpose": entry.purpose, "licence": entry.licence,
                        "commercial_use": entry.commercial_use,
                        "sha256_pinned": [f.relpath for f in entry.files if f.sha256]}
    return report


_PACK_HINT = "download the pack from the insightface model zoo and unzip it there"

def _insightface_pack(name: str, detector: str, recognition: str, used_for: str) -> AuxiliaryWeights:
    """An insightface model pack: its SCRFD detector and the ArcFace recognition file facegen runs."""
    return AuxiliaryWeights(
        name=name,
        purpose=(f"insightface {name} pack: SCRFD-10G detector + {recognition.removesuffix('.onnx')} ArcFace "
                 f"({used_for})"),
        files=(WeightFile(f"{name}/{detector}", role="detector"),
               WeightFile(f"{name}/{recognition}", role="recognition")),
        licence=licence_text("insightface-packs"),
        commercial_use=commercial_use("insightface-packs"),
        hint=_PACK_HINT,
    )


register_auxiliary(_insightface_pack("antelopev2", "scrfd_10g_bnkps.onnx", "glintr100.onnx", "InstantID, Arc2Face"))
register_auxiliary(_insightface_pack("buffalo_l", "det_10g.onnx", "w600k_r50.onnx", "IP-Adapter-FaceID, inswapper"))

#: the one statement of which swap engine needs what (the missing-weights message and the CLI say it)
SWAP_ENGINE_RULE = ("facegen swap: --engine diffusion (the default) needs --model PRESET (tiny runs offline); "
                    "--engine inswapper needs inswapper_128.onnx and the buffalo_l pack, no preset")

register_auxiliary(AuxiliaryWeights(
    name="inswapper_128",
    purpose="fast GAN face swap (facegen swap --engine inswapper)",
    files=(WeightFile("inswapper_128.onnx", alternatives=("inswapper/inswapper_128.onnx",), role="swapper"),),
    licence=licence_text("inswapper-nc"),
    commercial_use=commercial_use("inswapper-nc"),
    template="arcface128",
    encoder="buffalo_l-w600k-r50",
    hint=f"it also needs the buffalo_l pack (det_10g.onnx, w600k_r50.onnx) ({SWAP_ENGINE_RULE})",
))

register_auxiliary(AuxiliaryWeights(
    name="gfpgan-v1.4",
    purpose="optional GFPGAN pre-pass of facegen restore (--gfpgan)",
    files=(WeightFile("gfpgan/GFPGANv1.4.pth", role="restorer",
                      url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth"),),
    licence=licence_text("gfpgan-apache"),
    commercial_use=commercial_use("gfpgan-apache"),
    package="gfpgan",
    hint="pip install gfpgan, and put GFPGANv1.4.pth there",
))


register_auxiliary(AuxiliaryWeights(
    name="eva02-clip-l-336",
    purpose="EVA02-CLIP-L-14-336 visual tower (PuLID's ID condition: encoder pulid-antelopev2-eva02)",
    files=(WeightFile(f"{EVA_REPO}/{EVA_FILE.removesuffix('.pt')}.safetensors", url=f"{EVA_REPO}:{EVA_FILE}",
                      alternatives=(f"{EVA_REPO}/{EVA_FILE}", f"eva_clip/{EVA_FILE}", EVA_FILE), role="eva"),),
    licence=licence_text("eva-clip-mit"),
    commercial_use=commercial_use("eva-clip-mit"),
    encoder="pulid-antelopev2-eva02",
    hint=f"the released {EVA_FILE} (a weights-only torch pickle) or a safetensors copy of it",
))

register_auxiliary(AuxiliaryWeights(
    name="facexlib-parsing",
    purpose="facexlib BiSeNet face parser (PuLID whitens the background before EVA-CLIP)",
    files=(WeightFile(f"facexlib/{PARSING_FILE}", url=PARSING_URL,
                      alternatives=(PARSING_FILE, f"facexlib/weights/{PARSING_FILE}"), role="parsing"),),
    licence=licence_text("facexlib-parsing"),
    commercial_use=commercial_use("facexlib-parsing"),
    template="ffhq512",
    encoder="pulid-antelopev2-eva02",
    hint="download it from the facexlib v0.2.0 release",
))


def pack_detectors() -> dict[str, str]:
    """``{pack: detector file name}`` of every insightface pack entry."""
    out: dict[str, str] = {}
    for name, entry in AUXILIARY.items():
        for f in entry.files:
            if f.role == "detector":
                out[name] = Path(f.relpath).name
    return out
