"""Where facegen looks for weights and caches, and the explicit licence acceptance."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ModelAccess:
    """How facegen may reach models: the weights folder (``--models-dir``; None = ``$FACEGEN_HOME/models``),
    the explicit acceptance of non-commercial licences (``--accept-license``; the env var counts too) and the
    device policy (None = auto). Built once by each way in (CLI, app, dataset spec, Python API) and passed down
    to loading, encoders, analyzers, pipelines, dataset and fr. Frozen and hashable (cache keys)."""

    models_dir: str | None = None
    accept_license: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        if self.models_dir is not None and not isinstance(self.models_dir, str):
            object.__setattr__(self, "models_dir", os.fspath(self.models_dir))
        object.__setattr__(self, "models_dir", self.models_dir or None)
        object.__setattr__(self, "accept_license", bool(self.accept_license))

    @property
    def root(self) -> Path:
        """The local weights folder."""
        return models_dir(self.models_dir)

    @property
    def accepted(self) -> bool:
        """True when non-commercial licences are accepted (flag or env var)."""
        return licence_accepted(self.accept_license)

    def require(self, what: str, licence: str) -> None:
        """Raise LicenseNotAcceptedError unless non-commercial licences are accepted."""
        require_licence(what, licence, self.accept_license)


#: the default access: ``$FACEGEN_HOME/models``, no licence accepted, auto device
DEFAULT_ACCESS = ModelAccess()


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: str | os.PathLike[str], expected: str | None) -> None:
    """Refuse a weight file whose sha256 differs from the registry's (no-op when none is pinned)."""
    if not expected:
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        from facegen.errors import ModelNotFoundError  # noqa: PLC0415
        raise ModelNotFoundError(f"weight file {Path(path).name}", [Path(path).name], Path(path).parent,
                                 hint=f"its sha256 is {actual}, expected {expected}: the file is corrupt or "
                                      "a different model; download it again")
