"""Example photos that ship with installed packages (never copied into this repository).

``python -m facegen.examples tom_hanks`` prints the path of the insightface wheel's
``Tom_Hanks_54745.png``; ``--flip`` writes a mirrored copy to a temporary folder and prints
its path (a second photo of the same person for ``facegen verify``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

from facegen.errors import FacegenError

EXAMPLES = {"tom_hanks": "Tom_Hanks_54745.png", "group": "t1.jpg"}


def example_photo(name: str = "tom_hanks") -> Path:
    """Path of an example photo from the insightface wheel (installed with --no-deps by setup)."""
    if name not in EXAMPLES:
        raise FacegenError(f"unknown example '{name}'; choose one of: {', '.join(EXAMPLES)}")
    spec = importlib.util.find_spec("insightface")
    path = Path(spec.origin).parent / "data" / "images" / EXAMPLES[name] if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FacegenError("example photos come with the insightface wheel: pip install --no-deps insightface")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facegen.examples")
    p.add_argument("name", nargs="?", default="tom_hanks", choices=sorted(EXAMPLES))
    p.add_argument("--flip", action="store_true", help="write and print a mirrored copy")
    args = p.parse_args(argv)
    try:
        path = example_photo(args.name)
    except FacegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.flip:
        from PIL import Image, ImageOps  # noqa: PLC0415
        out = Path(tempfile.mkdtemp(prefix="facegen-example-")) / f"{path.stem}_flipped.png"
        ImageOps.mirror(Image.open(path).convert("RGB")).save(out)
        path = out
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
