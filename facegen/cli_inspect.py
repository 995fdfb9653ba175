"""``facegen inspect FILE...``: the provenance marks of images, and the provenance switches
every writing command shares (``--no-watermark``, ``--no-c2pa``, ``--c2pa-cert``, ``--c2pa-key``).

    facegen inspect out/0000.png                 # one verdict line + details per file
    facegen inspect --json out/*.png             # one JSON object per file per line
    facegen inspect --trust my-ca.pem photo.jpg  # also trust this certificate (or CA)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from facegen.errors import FacegenError


def add_provenance_options(p: argparse.ArgumentParser) -> None:
    """The provenance switches of a command that writes images."""
    g = p.add_argument_group("provenance (C2PA Content Credentials and invisible watermark; both on by default)")
    g.add_argument("--no-watermark", action="store_true",
                   help="do not embed the invisible watermark (a warning says what is lost)")
    g.add_argument("--no-c2pa", action="store_true",
                   help="do not sign a C2PA manifest into the files (a warning says what is lost)")
    g.add_argument("--c2pa-cert", default=None, metavar="PEM",
                   help="certificate chain to sign with (default: $FACEGEN_C2PA_CERT, else this "
                        "installation's self-signed certificate in $FACEGEN_HOME/c2pa)")
    g.add_argument("--c2pa-key", default=None, metavar="PEM", help="its private key ($FACEGEN_C2PA_KEY)")


def provenance_from_args(args: argparse.Namespace) -> Any:
    """The resolved :class:`facegen.provenance.Provenance` (a bad certificate fails here, before
    any model is loaded)."""
    from facegen.provenance import provenance_options  # noqa: PLC0415

    return provenance_options(watermark=not getattr(args, "no_watermark", False),
                              c2pa=not getattr(args, "no_c2pa", False),
                              cert=getattr(args, "c2pa_cert", None), key=getattr(args, "c2pa_key", None))


def run_inspect(args: argparse.Namespace) -> int:
    from facegen.provenance.inspect import summary_lines  # noqa: PLC0415
    from facegen.video.cli import inspect_any  # noqa: PLC0415 - images, seals and videos

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
    p.add_argument("--json", action="store_true", help="one JSON object per file per line")
    p.add_argument("--trust", action="append", default=None, metavar="CERT",
                   help="a PEM certificate (or CA) to trust as a signer (repeatable)")
    p.set_defaults(func=run_inspect)
