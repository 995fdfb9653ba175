"""The model registry (presets), weight resolution, tiny checkpoints and strict loaders."""

from __future__ import annotations

from typing import Any

from facegen.models.registry import (
    PRESETS,
    Component,
    Preset,
    SamplerDefaults,
    get_preset,
    list_presets,
    tiny_twin,
)
from facegen.models.resolve import ResolvedPreset, missing_files, resolve_preset
from facegen.paths import DEFAULT_ACCESS, ModelAccess

__all__ = [
    "PRESETS",
    "Component",
    "Preset",
    "ResolvedPreset",
    "SamplerDefaults",
    "get_preset",
    "list_presets",
    "missing_files",
    "preset_status",
    "resolve_preset",
    "tiny_twin",
]


def preset_status(access: ModelAccess = DEFAULT_ACCESS) -> dict[str, dict[str, Any]]:
    """For ``facegen doctor``: which real presets have all their files locally (nothing is built)."""
    root = access.root
    report: dict[str, dict[str, Any]] = {}
    for name in list_presets(include_tiny=False):
        preset = PRESETS[name]
        missing = [f"{c.repo}/{f}" for c, f in missing_files(preset, root)]
        twin = tiny_twin(name)
        report[name] = {"ready": not missing, "missing": missing, "encoder": preset.encoder,
                        "licence": preset.licence, "tiny_twin": twin.name if twin else None,
                        "components": {c.role: c.repo for c in preset.components}, "notes": preset.notes,
                        "access": [c.access for c in preset.components if c.access],
                        "reason": "ready" if not missing else f"{len(missing)} files missing under {root}"}
    for name in list_presets(include_tiny=True):
        preset = PRESETS[name]
        if preset.tiny:
            report[name] = {"ready": True, "encoder": preset.encoder, "twin_of": preset.twin,
                            "notes": preset.notes,
                            "reason": f"built on first use (random weights; tiny twin of {preset.twin})"}
    return report
