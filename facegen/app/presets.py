"""Which presets the app offers, whether their weights are present, and what they take.

Every registered preset is listed; one whose weights are missing (or whose licence was not
accepted) stays in the list, labelled, with the reason shown next to it. Checking is local
only (no hub probe), so building the page never touches the network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from facegen.adapters.registry import adapter_class
from facegen.models.registry import PRESETS, Preset, get_preset, list_presets
from facegen.paths import DEFAULT_ACCESS, ModelAccess

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PresetInfo:
    name: str
    ready: bool
    reason: str               # "" when ready
    description: str
    licence: str
    tiny: bool

    @property
    def label(self) -> str:
        return self.name if self.ready else f"{self.name} (unavailable)"


def takes_prompt(preset: str | Preset) -> bool:
    """Whether the preset's adapter takes a text prompt (a capability, asked of the adapter)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    return adapter_class(p.family).supports_prompt


def takes_negative_prompt(preset: str | Preset) -> bool:
    """Whether the preset's adapter takes a negative prompt (FLUX.1-dev's does not)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    cls = adapter_class(p.family)
    return cls.supports_prompt and cls.supports_negative_prompt


def editable(preset: str | Preset) -> bool:
    """Presets the edit jobs (swap, age, restore) can run: those whose adapter supports edits
    (an inpainting pipeline of its own; InstantID's feeds IdentityNet the target's keypoints)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    return adapter_class(p.family).supports_edit


def _status_from_models(access: ModelAccess) -> dict[str, dict[str, Any]] | None:
    """``facegen.models.preset_status`` (None when the check itself fails: the page still builds)."""
    from facegen.models import preset_status

    try:
        return dict(preset_status(access))
    except Exception as exc:  # noqa: BLE001 - a status check must never break the page
        logger.warning("preset_status failed (%s); checking files directly", exc)
        return None


def _local_status(preset: Preset, access: ModelAccess) -> tuple[bool, str]:
    if preset.tiny:
        return True, ""
    from facegen.models.resolve import missing_files

    root = access.root
    missing = missing_files(preset, root)
    if not missing:
        return True, ""
    shown = ", ".join(f"{c.repo}/{f}" for c, f in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return False, f"weights not found in {root}: {shown}{more} (see `facegen doctor`)"


def preset_infos(access: ModelAccess = DEFAULT_ACCESS) -> list[PresetInfo]:
    """One :class:`PresetInfo` per registered preset, real presets first, tiny ones last."""
    status = _status_from_models(access) or {}
    names = list_presets(include_tiny=False) + [n for n in list_presets() if PRESETS[n].tiny]
    out = []
    for name in names:
        preset = PRESETS[name]
        st = status.get(name)
        if st is not None:
            ready, reason = bool(st.get("ready")), str(st.get("reason") or ("" if st.get("ready") else "missing"))
        else:
            ready, reason = _local_status(preset, access)
        if ready and preset.needs_licence and not access.accepted:
            ready, reason = False, ("non-commercial licence not accepted: restart with "
                                    "--accept-license to use it")
        out.append(PresetInfo(name, ready, reason, preset.description, preset.licence, preset.tiny))
    return out


def choices(infos: list[PresetInfo]) -> list[tuple[str, str]]:
    """``(label, value)`` pairs for a dropdown."""
    return [(i.label, i.name) for i in infos]


def note_for(name: str, infos: list[PresetInfo]) -> str:
    """Markdown shown under the model dropdown for the selected preset."""
    info = next((i for i in infos if i.name == name), None)
    if info is None:
        return ""
    head = f"**{info.name}**: {info.description}."
    if info.tiny:
        head += " _Random weights: outputs are noise-like images, not faces._"
    if not info.ready:
        return f"{head}  \n⚠ Unavailable: {info.reason}"
    return head


def status_table(infos: list[PresetInfo]) -> str:
    """Markdown table of every preset: ready or why not, and its licence."""
    rows = ["| preset | status | licence |", "|---|---|---|"]
    for i in infos:
        state = "ready" if i.ready else f"unavailable: {i.reason}"
        rows.append(f"| `{i.name}` | {_cell(state)} | {_cell(i.licence)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
