"""Find a preset's files: the local models folder first, then the hub when online.

Local layout = hub layout: ``<models_dir>/<owner>/<repo>/<path>`` (e.g.
``~/.cache/facegen/models/FoivosPar/Arc2Face/encoder/pytorch_model.bin``), so
``huggingface-cli download OWNER/REPO FILE --local-dir <models_dir>/OWNER/REPO`` fills it.
Offline (``HF_HUB_OFFLINE=1`` or the hub unreachable) and absent →
:class:`~facegen.errors.ModelNotFoundError` naming every missing file and the folder.
Tiny presets resolve to the tiny cache (:mod:`facegen.models.tiny`), built on first use.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from facegen.errors import InvalidArgumentError, ModelNotFoundError
from facegen.models.registry import Component, Preset
from facegen.paths import DEFAULT_ACCESS, ModelAccess, sha256_of

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset whose files are all present under ``root`` (hub layout)."""

    preset: Preset
    root: Path

    def repo_dir(self, role: str) -> Path:
        return self.root / self.preset.component(role).repo

    def folder(self, role: str) -> Path:
        """The component's own folder (repo dir + subfolder)."""
        comp = self.preset.component(role)
        return self.root / comp.repo / comp.subfolder if comp.subfolder else self.root / comp.repo

    def file(self, role: str) -> Path:
        """The component's single weight file (``weight_name``)."""
        comp = self.preset.component(role)
        if comp.weight_name is None:
            raise KeyError(f"component '{role}' of preset '{self.preset.name}' has no weight file")
        return self.root / comp.repo / comp.weight_name


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so an unplugged machine fails in seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_files(preset: Preset, root: Path) -> list[tuple[Component, str]]:
    """``(component, path)`` for each file of ``preset`` absent under ``root``."""
    out = []
    seen = set()
    for comp in preset.components:
        for f in comp.files:
            key = (comp.repo, f)
            if key in seen:
                continue
            seen.add(key)
            if not (root / comp.repo / f).is_file():
                out.append((comp, f))
    return out


def _verify_checksums(preset: Preset, root: Path, files: list[tuple[Component, str]]) -> None:
    for comp, f in files:
        expected = dict(comp.sha256).get(f)
        if expected is None:
            continue
        got = sha256_of(root / comp.repo / f)
        if got != expected:
            (root / comp.repo / f).unlink(missing_ok=True)
            raise ModelNotFoundError(f"preset '{preset.name}'", [f"{comp.repo}/{f}"], root / comp.repo,
                                     hint=f"the downloaded file's sha256 {got[:12]}… does not match "
                                          f"the registry ({expected[:12]}…); it was removed, fetch it again")


def _not_found(preset: Preset, root: Path, missing: list[tuple[Component, str]], why: str) -> ModelNotFoundError:
    files = [f"{c.repo}/{f}" + (f"@{c.revision}" if c.revision != "main" else "") for c, f in missing]
    first = missing[0][0].repo
    names = " ".join(f for c, f in missing if c.repo == first)
    hint = (f"{why}; fetch them into that folder in the hub layout, e.g. `hf download {first} {names} "
            f"--local-dir {root / first}` (and likewise for the other repositories), or point --models-dir / "
            "FACEGEN_HOME at a folder that has them")
    gated = dict.fromkeys(c.access for c, _ in missing if c.access)
    if gated:
        hint += "; " + "; ".join(gated)
    return ModelNotFoundError(f"preset '{preset.name}'", files, root, hint=hint)


def _download(preset: Preset, root: Path, missing: list[tuple[Component, str]]) -> None:
    from huggingface_hub import hf_hub_download

    for comp, f in missing:
        logger.info("downloading %s/%s (revision %s) into %s", comp.repo, f, comp.revision, root)
        try:
            hf_hub_download(comp.repo, f, revision=comp.revision, local_dir=root / comp.repo)
        except Exception as exc:  # network, gated repo, missing file: all mean "fetch it yourself"
            still = missing_files(preset, root)
            raise _not_found(preset, root, still, f"download failed ({type(exc).__name__}: {exc})"
                             .replace("\n", " ")[:300]) from exc
    _verify_checksums(preset, root, missing)


def resolve_preset(preset: Preset, access: ModelAccess = DEFAULT_ACCESS,
                   download: bool | None = None) -> ResolvedPreset:
    """Locate (and when allowed, download) every file of ``preset``.

    download: ``None`` = download when online (``HF_HUB_OFFLINE`` unset and the hub reachable);
        ``False`` = local only; ``True`` = try the hub even if the probe fails.
    """
    if preset.tiny:
        from facegen.models.tiny import ensure_tiny

        root = ensure_tiny(preset)
    else:
        root = access.root
    missing = missing_files(preset, root)
    if not missing:
        return ResolvedPreset(preset, root)
    if preset.tiny:
        raise InvalidArgumentError(f"the tiny cache at {root} is incomplete; delete it and retry")
    if download is False:
        raise _not_found(preset, root, missing, "downloads are disabled")
    if hub_offline():
        raise _not_found(preset, root, missing, "offline (HF_HUB_OFFLINE is set)")
    if download is None and not hub_reachable():
        raise _not_found(preset, root, missing, "the Hugging Face hub is not reachable")
    _download(preset, root, missing)
    left = missing_files(preset, root)
    if left:
        raise _not_found(preset, root, left, "files still missing after download")
    return ResolvedPreset(preset, root)
