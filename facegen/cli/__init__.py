"""The ``facegen`` command line: the parser, the sub-commands, and the exit policy.

Exit codes: 0 success; 2 a user mistake (a :class:`~facegen.errors.FacegenError` or a bad
argument: ``error: <one line>`` on stderr, no traceback); 1 an internal failure (one line;
the traceback with ``--debug``); 130 interrupted.

One module per command group (:data:`COMMAND_MODULES`, in help order), each exposing
``add_parser(subparsers)`` that sets ``func`` (``args -> int``); the options they share are
declared once in :mod:`facegen.cli.options`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
from typing import Any, Callable, Sequence

from facegen import __version__
from facegen.cli import dataset, doctor, edit, embed, fr, generate, inspect, report, serve
from facegen.errors import FacegenError

logger = logging.getLogger("facegen")

#: the modules that register sub-commands, in help order (plain imports: a broken command
#: module fails loudly instead of vanishing from the CLI)
COMMAND_MODULES = (embed, doctor, generate, edit, dataset, report, fr, serve, inspect)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"error: {one_line(message)} (see '{self.prog} --help')\n")


def one_line(text: object) -> str:
    """``text`` on one line (a message with newlines would break the one-line error contract)."""
    return " ".join(str(text).split("\n")).strip()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facegen", description="Generative face synthesis on face-identity embeddings.")
    parser.add_argument("--version", action="version", version=f"facegen {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def setup_logging(verbose: int, quiet: bool = False) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_command(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace, debug: bool = False) -> int:
    """Run a command under the exit policy: its code (0 when it returns None); 2 and one
    ``error:`` line for a user mistake; 1 and one line (plus the traceback when ``debug``)
    for anything else; 130 when interrupted (with the command's ``on_interrupt`` hint, e.g. how to
    resume); 0 on a closed pipe (``facegen ... | head``)."""
    try:
        return int(func(args) or 0)
    except FacegenError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", None)      # a command that resumes says how
        print("error: interrupted" + (f" ({hint})" if hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            return _internal(exc, debug)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or one_line(exc)} ({_ENVIRONMENT_ERRNOS[exc.errno]})", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the one place internal failures are reported
        return _internal(exc, debug)


#: file-system failures that are the machine's state, not facegen's bug: one line, exit 2
_ENVIRONMENT_ERRNOS = {errno.ENOSPC: "free some space or write elsewhere",
                       errno.EDQUOT: "the disk quota is full: free some space or write elsewhere",
                       errno.EROFS: "a read-only file system: write elsewhere",
                       errno.EACCES: "check the permissions or write elsewhere",
                       errno.EPERM: "check the permissions or write elsewhere",
                       errno.EFBIG: "the file system refuses a file this large"}


def _internal(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"error: internal failure: {type(exc).__name__}: {one_line(exc)} "
          "(rerun with --debug for the traceback)", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    return run_command(args.func, args, debug=args.debug)


__all__ = ["COMMAND_MODULES", "build_parser", "main", "run_command"]
