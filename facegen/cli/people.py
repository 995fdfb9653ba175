"""``facegen generate --people``: several people in one image (the options and their checks).

    facegen generate --model faceid-sd15 --people a1.jpg,a2.jpg b.jpg --layout side-by-side --out out/

One value per person: that person's photos joined by commas, or a folder of their photos.
``--layout``: ``side-by-side`` (default), ``group``, or face boxes ``"x0,y0,x1,y1;x0,y0,x1,y1"``
in fractions of the image.  Everything here is checked before the model loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facegen.choices import PEOPLE_LAYOUT
from facegen.errors import InvalidArgumentError


def add_people_options(p: argparse.ArgumentParser, who: Any) -> None:
    """``--people`` joins ``who`` (the group of ``--id`` / ``--id-embeds``: exactly one of them);
    ``--layout`` goes on ``p``."""
    who.add_argument("--people", nargs="+", default=None, metavar="PHOTOS",
                   help="several people in one image: one value per person, their photos joined by commas "
                        "(or a folder of their photos), e.g. --people a1.jpg,a2.jpg b.jpg (instead of --id)")
    p.add_argument("--layout", default=None, metavar="LAYOUT",
                   help=f"where --people go: {PEOPLE_LAYOUT.words()} (default {PEOPLE_LAYOUT.default}), or face boxes "
                        "'x0,y0,x1,y1;x0,y0,x1,y1' in fractions (0..1) of the image")


def id_arguments(args: argparse.Namespace) -> list[str]:
    """The photo/folder arguments of the call (``--id`` or every ``--people`` entry)."""
    if args.people is None:
        return list(args.ids or [])
    return [x for value in args.people for x in person_photos(value)]


def person_photos(value: str) -> list[str]:
    """One ``--people`` value: photos joined by commas, or one path that itself holds a comma
    (an existing file or folder is never split)."""
    if "," in value and Path(value).exists():
        return [value]
    return [x for x in value.split(",") if x]


def people_from_args(args: argparse.Namespace) -> list[list[Path]] | None:
    """Each person's photos (None without ``--people``), with the preset's capability and the
    layout checked before any model loads."""
    from facegen.adapters.registry import check_people
    from facegen.cli.options import expand_id_paths
    from facegen.models.registry import get_preset
    from facegen.pipelines.people import parse_layout

    if args.people is None:
        if args.layout is not None:
            raise InvalidArgumentError("--layout places the people of --people; give --people (one value per person)")
        return None                                  # argparse: exactly one of --id, --id-embeds, --people
    if args.face_layout is not None:
        raise InvalidArgumentError("--face-layout frames one person; with --people use --layout")
    people = []
    for value in args.people:
        parts = person_photos(value)
        if not parts:
            raise InvalidArgumentError(f"--people {value!r}: give that person's photos, joined by commas")
        people.append(expand_id_paths(parts))
    n = len(people)
    check_people(get_preset(args.model), n, placed=args.layout is not None)
    if n > 1 or args.layout is not None:
        parse_layout(args.layout, n)
    return people


def people_kwargs(args: argparse.Namespace, people: list[list[Path]] | None, ids: list[Path]) -> dict[str, Any]:
    """The pipeline arguments naming who is in the picture."""
    if people is None:
        return {"id_images": ids}
    return {"people": people, "layout": args.layout}


def people_lines(record: dict[str, Any]) -> list[str]:
    """One line per person of an image's ``metadata.jsonl`` record (nothing for one-person runs)."""
    out = []
    for r in record.get("people_report") or []:
        if record.get("people", 1) < 2:
            break
        sim, cross = r.get("id_similarity"), r.get("cross_similarity")
        found = {True: "face found in its box", False: "no face in its box", None: "not measured"}[r.get("face_found")]
        out.append(f"    person {r['person']}: {found}  id_similarity={'-' if sim is None else f'{sim:.3f}'}"
                   f"  cross_similarity={'-' if cross is None else f'{cross:.3f}'}")
    return out
