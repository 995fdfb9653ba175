"""Checks the CLI makes before any model loads: step limits, readable inputs, and outputs that
neither overwrite an input nor an earlier result nor fail after the work is done. (Numbers are
checked as they are parsed: the argparse types in :mod:`facegen.cli.options`.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from facegen import limits
from facegen.errors import FacegenError, InvalidArgumentError


def check_steps(steps: int | None) -> None:
    """``--steps`` within ``$FACEGEN_MAX_STEPS`` (the scheduler's own bound is checked after loading)."""
    if steps is not None:
        limits.integer("--steps", steps, 1, limits.max_steps(),
                       f"the limit; raise it with {limits.MAX_STEPS_ENV}")


def check_inputs_readable(named: Iterable[tuple[str, str | os.PathLike[str]]]) -> None:
    """Decode every input photo now (cheap), so that a missing, unreadable, non-regular or
    non-image file is reported before a model loads; errors say which argument it was."""
    from facegen.errors import BadImageError  # noqa: PLC0415
    from facegen.io import load_image  # noqa: PLC0415

    for what, path in named:
        try:
            load_image(path)
        except BadImageError as exc:
            msg = str(exc)
            raise BadImageError(f"{what} {msg}" if msg.startswith(str(path)) else f"{what} {path}: {msg}") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def refuse_input_as_output(out: Path, inputs: Iterable[str | os.PathLike[str]], flag: str = "--out") -> None:
    """An output that is also an input is refused, ``--overwrite`` or not."""
    for src in inputs:
        if _same_file(out, Path(src)):
            raise InvalidArgumentError(f"{flag} {out} is also an input ({src}); facegen never overwrites an input: "
                                       "give another output file")


def probe_writable(folder: Path, flag: str = "--out") -> None:
    """Check that ``folder`` can be written (or created) by making a throw-away file in it, or
    in its nearest existing parent, so an unwritable or read-only destination is reported
    before any work, as a user error. Nothing is left behind (no folder is created)."""
    probe_dir = Path(folder)
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InvalidArgumentError(f"{flag} {folder}: cannot write there ({probe_dir} is not a folder)")
    try:
        probe = probe_dir / f".facegen-write-test-{secrets.token_hex(4)}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidArgumentError(f"{flag} {folder}: cannot write there ({exc.strerror or exc})") from None


def check_output_file(path: str, inputs: Iterable[str | os.PathLike[str]], overwrite: bool,
                      suffixes: Iterable[str]) -> Path:
    """The ``--out`` of an edit: an allowed suffix, not an input, not an existing file unless
    ``--overwrite``, and in a folder that can be written — all before any model loads."""
    out = Path(path)
    suffixes = set(suffixes)
    if out.suffix.lower() not in suffixes:
        raise InvalidArgumentError(f"--out {out}: use a .png, .jpg or .webp file name")
    if out.is_dir():
        raise InvalidArgumentError(f"--out {out} is a folder; give a file name")
    refuse_input_as_output(out, inputs)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise InvalidArgumentError(f"--out {out} already exists; give another name, or --overwrite to replace it")
    probe_writable(out.parent if str(out.parent) else Path("."))
    return out


def previous_run(out_dir: Path) -> list[str]:
    """Image files of an earlier ``generate`` run in ``out_dir``: those ``metadata.jsonl`` lists and
    any ``NNNN.png``."""
    import re  # noqa: PLC0415

    from facegen.io.files import parse_json, read_bytes  # noqa: PLC0415

    names: list[str] = []
    meta = out_dir / "metadata.jsonl"
    if meta.is_file():
        with contextlib.suppress(FacegenError):      # an unreadable record names no file of ours
            lines = read_bytes(meta, what="metadata", text=False).splitlines()
            for line in lines:
                with contextlib.suppress(FacegenError):
                    name = parse_json(line, name=str(meta), schema={"file": str})["file"]
                    if Path(name).name == name and name not in names:
                        names.append(name)
    if out_dir.is_dir():
        names += sorted(p.name for p in out_dir.iterdir() if re.fullmatch(r"\d{4,}\.png", p.name)
                        and p.name not in names)
    return names


def remove_previous_run(out_dir: Path, names: Iterable[str], keep: Iterable[Path]) -> None:
    """Delete an earlier run's images and metadata (``--overwrite``), never an input."""
    protected = [Path(k) for k in keep]
    for name in [*names, "metadata.jsonl"]:
        path = out_dir / name
        if any(_same_file(path, k) for k in protected):
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise FacegenError(f"cannot remove {path} of the previous run: {exc.strerror or exc}") from None
