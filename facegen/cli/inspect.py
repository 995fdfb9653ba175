"""``facegen inspect FILE...``: the provenance marks of images (the switches that write them,
``--no-watermark``, ``--no-c2pa``, ``--c2pa-cert``, ``--c2pa-key``, are in :mod:`facegen.cli.options`).

    facegen inspect out/0000.png                 # one verdict line + details per file
    facegen inspect --json out/*.png             # one JSON object per file per line
    facegen inspect --trust my-ca.pem photo.jpg  # also trust this certificate (or CA)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from facegen.cli.options import add_json_option
from facegen.errors import FacegenError


def run_inspect(args: argparse.Namespace) -> int:
    from facegen.provenance.inspect import summary_lines  # noqa: PLC0415
    from facegen.cli.video import inspect_any  # noqa: PLC0415 - images, seals and videos

    failed = 0
    for name in args.files:
        try:
            report = inspect_any(name, trust=args.trust or ())
        except FacegenError as exc:
            failed += 1
            msg = str(exc) if str(exc).startswith(name) else f"{name}: {exc}"
            print(f"error: {msg}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "error": str(exc)}), flush=True)
            continue
        if args.json:
            print(json.dumps(report, default=str), flush=True)
        else:
            print("\n".join(summary_lines(report)), flush=True)
    return 2 if failed else 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("inspect", help="read back an image's facegen metadata, C2PA credentials and watermark",
                       description="For each file: the facegen metadata, the C2PA manifest (absent, "
                                   "valid-untrusted, trusted, invalid), the invisible watermark, and one verdict.")
    p.add_argument("files", nargs="+", metavar="FILE")
    add_json_option(p, "one JSON object per file per line")
    p.add_argument("--trust", action="append", default=None, metavar="CERT",
                   help="a PEM certificate (or CA) to trust as a signer (repeatable)")
    p.set_defaults(func=run_inspect)
