"""Exceptions raised by facegen.

Every user mistake raises a :class:`FacegenError` subclass whose message says what was
wrong and what to do.  The CLI prints ``error: <message>`` on one line and exits 2 for
these; anything else is an internal failure (exit 1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable


class FacegenError(Exception):
    """Base class of every error caused by a user's input or environment."""

    exit_code: int = 2


class BadImageError(FacegenError):
    """The image could not be read, or is not allowed (format, size, content)."""


class BadVideoError(FacegenError):
    """The file is not a usable video (not a video, no video stream, empty, corrupt, beyond the limits)."""


class NoFaceError(FacegenError):
    """No usable face was found in an image."""


class FaceTooSmallError(NoFaceError):
    """A face was found but is too small to align and embed reliably."""


class ModelNotFoundError(FacegenError):
    """Weight files are missing: the message names them and the folder to put them in."""

    def __init__(self, what: str, files: Iterable[str] = (), folder: str | Path | None = None,
                 hint: str = "") -> None:
        self.what = what
        self.files = list(files)
        self.folder = str(folder) if folder is not None else None
        self.hint = hint
        msg = f"{what}: model files not found"
        if self.files:
            msg += f": {', '.join(self.files)}"
        if self.folder:
            msg += f" (put them in {self.folder})"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class EncoderMismatchError(FacegenError):
    """An ID embedding from one encoder was given to something expecting another."""


class LicenseNotAcceptedError(FacegenError):
    """Non-commercial weights were requested without an explicit licence acceptance."""


class ConsentRequiredError(FacegenError):
    """Editing a real person's face needs an explicit consent flag."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_command(package: str, extra: str | None = None, requires: list[str] | None = None) -> str:
    """The pip command that installs ``package`` as facegen declares it, derived from facegen's
    own requirements (``requires``: requirement strings as ``importlib.metadata.requires``
    gives them; ``None``: the installed facegen's): the extra that lists it (``extra`` when
    that one does), else the core requirement with its range, else the bare name."""
    if requires is None:
        try:
            from importlib.metadata import PackageNotFoundError, requires as _requires  # noqa: PLC0415

            requires = _requires("facegen") or []
        except (ImportError, PackageNotFoundError):
            requires = []
    extras: list[str] = []
    core: str | None = None
    for req in requires:
        spec, _, marker = req.partition(";")
        name = re.split(r"[\s\[<>=!~;(]", spec.strip(), maxsplit=1)[0]
        if _norm(name) != _norm(package):
            continue
        found = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if found:
            extras.append(found.group(1))
        else:
            core = spec.strip().replace(" ", "")
    if extra and extra in extras:
        return f"pip install 'facegen[{extra}]'"
    useful = [e for e in extras if e not in ("all", "dev")]
    if useful:
        return f"pip install 'facegen[{useful[0]}]'"
    if core:
        return f"pip install '{core}'"
    if extras:
        return f"pip install 'facegen[{extras[0]}]'"
    return f"pip install {package}"


class MissingDependencyError(FacegenError):
    """An optional package is needed for this feature; the message names the pip command that
    installs it as facegen declares it (:func:`install_command`)."""

    def __init__(self, package: str, extra: str | None = None, feature: str = "") -> None:
        import sys  # noqa: PLC0415

        where = install_command(package, extra)
        what = f" for {feature}" if feature else ""
        msg = f"the optional package '{package}' is needed{what} and this Python ({sys.executable}) cannot import it"
        venv = Path(".venv")
        if (venv / "bin" / "python").is_file() and Path(sys.prefix).resolve() != venv.resolve():
            msg += "; run .venv/bin/python (the environment scripts/setup.sh made) instead, or"   # not activated
        super().__init__(f"{msg}: {where}")


class InvalidArgumentError(FacegenError, ValueError):
    """An argument has a value that cannot be used; the message names it."""


class ModelFileError(FacegenError):
    """A model file (weights, config, tokenizer, scheduler, ONNX graph, LoRA) is corrupt,
    truncated, hostile or out of bounds: the message starts with the file and says what is wrong."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())[:300]
        super().__init__(f"{self.path}: {self.problem}")


class BadFileError(FacegenError):
    """A file that is not an image (a certificate, seal, sidecar, saved array, lock file, tag
    or text chunk) is unreadable, not a regular file, too large, or shaped wrong."""
