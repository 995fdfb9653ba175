"""Where facegen looks for weights and caches, and the explicit licence acceptance."""

from __future__ import annotations

import os
from pathlib import Path

from facegen.errors import LicenseNotAcceptedError

ENV_HOME = "FACEGEN_HOME"
ENV_ACCEPT_LICENCES = "FACEGEN_ACCEPT_NONCOMMERCIAL"


def facegen_home() -> Path:
    """``$FACEGEN_HOME`` or ``~/.cache/facegen``."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facegen"


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The local weights folder: ``override`` (``--models-dir``) or ``$FACEGEN_HOME/models``."""
    return Path(override).expanduser() if override else facegen_home() / "models"


def cache_dir() -> Path:
    return facegen_home() / "cache"


def licence_accepted(flag: bool = False) -> bool:
    """True when the user accepted non-commercial licences (flag, or env var set to 1/yes/true)."""
    if flag:
        return True
    return os.environ.get(ENV_ACCEPT_LICENCES, "").strip().lower() in {"1", "yes", "true"}


def require_licence(what: str, licence: str, accepted: bool = False) -> None:
    """Raise LicenseNotAcceptedError unless the non-commercial licence was accepted explicitly."""
    if not licence_accepted(accepted):
        raise LicenseNotAcceptedError(
            f"{what} is under a non-commercial licence ({licence}); accept it with "
            f"--accept-license or {ENV_ACCEPT_LICENCES}=1 to use it")
