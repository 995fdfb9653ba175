"""``facegen serve`` (and ``python app.py``): the web demo, with safe defaults.

    facegen serve --model tiny                 # offline, http://127.0.0.1:7860
    facegen serve --model arc2face --accept-license --models-dir ~/weights
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from facegen.app.limits import (DEFAULT_MAX_BODY, DEFAULT_MAX_CLIENT_TOTAL, DEFAULT_MAX_UPLOAD_TOTAL,
                                 DEFAULT_MAX_WORK_TOTAL, DEFAULT_RETENTION_S)
from facegen.cli.options import access_from_args, add_device_options, add_models_options

logger = logging.getLogger("facegen.serve")

#: seconds a job still running when the app stops is given to finish before the process exits
STOP_GRACE_S = 5.0


def add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny",
                   help="preset selected when the page opens (default: tiny, offline random weights)")
    add_models_options(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free one)")
    p.add_argument("--share", action="store_true",
                   help="also open a public Gradio share link (off by default; anyone with the link can use it)")
    add_device_options(p, dtype=False)
    p.add_argument("--max-file-size", default="10mb", help="largest accepted upload (default 10mb)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="requests allowed to wait for the model (default 16); one runs at a time")
    p.add_argument("--max-images", type=int, default=8,
                   help="most images made, and files uploaded, per request (default 8)")
    p.add_argument("--max-upload-total", default=DEFAULT_MAX_UPLOAD_TOTAL,
                   help=f"most bytes uploaded in one request, all files together (default {DEFAULT_MAX_UPLOAD_TOTAL})")
    p.add_argument("--max-upload-per-client", default=DEFAULT_MAX_CLIENT_TOTAL,
                   help=f"most bytes one address may upload within --retention (default {DEFAULT_MAX_CLIENT_TOTAL})")
    p.add_argument("--max-work-total", default=DEFAULT_MAX_WORK_TOTAL,
                   help=f"most bytes of uploads and results kept at once; the oldest are evicted first "
                        f"(default {DEFAULT_MAX_WORK_TOTAL})")
    p.add_argument("--max-body", default=DEFAULT_MAX_BODY,
                   help=f"largest API request body other than uploads (default {DEFAULT_MAX_BODY}; "
                        "prompts are also capped at $FACEGEN_MAX_PROMPT characters)")
    p.add_argument("--retention", type=float, default=DEFAULT_RETENTION_S, metavar="SECONDS",
                   help=f"delete uploads and results older than this (default {DEFAULT_RETENTION_S:.0f} s); "
                        "all are deleted when the app stops (Ctrl-C, SIGTERM)")
    p.add_argument("--work-dir", default=None,
                   help="the app's own temporary folder (default: a fresh private one, removed at exit)")
    p.add_argument("--no-preload", dest="preload", action="store_false",
                   help="do not load the default preset in the background at start-up")


def run_serve(args: argparse.Namespace) -> int:
    """Build and launch the demo; blocks until interrupted."""
    from facegen.app import build_app, launch_app, require_gradio

    require_gradio()
    from facegen.app.context import remove_user_files
    from facegen.app.limits import RequestLimits
    from facegen.errors import InvalidArgumentError

    if args.max_queue < 1 or args.max_images < 1:
        raise InvalidArgumentError("--max-queue and --max-images must be >= 1")
    if not math.isfinite(args.retention) or args.retention <= 0:
        raise InvalidArgumentError(f"--retention must be a positive number of seconds, got {args.retention}")
    limits = RequestLimits.from_options(args.max_body, args.max_upload_total, args.max_images,
                                        args.max_upload_per_client, args.max_work_total)
    t0 = time.perf_counter()
    app = build_app(model=args.model, access=access_from_args(args), work_dir=args.work_dir, preload=args.preload,
                    max_images=args.max_images)
    work = app.facegen_context.work_dir
    before = set(threading.enumerate())
    stopped = False
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM,) if hasattr(signal, "SIGTERM")}
    for sig in previous:        # SIGTERM stops the app like Ctrl-C: the cleanup below runs
        signal.signal(sig, _interrupt)
    try:
        _, url, share_url = launch_app(app, host=args.host, port=args.port, share=args.share,
                                       max_file_size=args.max_file_size, max_queue=args.max_queue,
                                       prevent_thread_lock=True, quiet=True, limits=limits,
                                       retention_s=args.retention)
        print(f"facegen web demo ready at {url} (started in {time.perf_counter() - t0:.1f} s)"
              + (f"; public link {share_url}" if share_url else ""), flush=True)
        while app.is_running:                # until Ctrl-C or SIGTERM (gradio's block_thread would
            time.sleep(0.1)                  # print its own "Keyboard interruption" message)
    except KeyboardInterrupt:
        stopped = True
    finally:
        print("facegen web demo stopping: deleting uploads and results", flush=True)
        janitor = getattr(app, "facegen_janitor", None)
        if janitor is not None:
            janitor.stop()
        try:
            app.close(verbose=False)
        finally:
            remove_user_files(work)          # users' uploads and results do not outlive the app
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _stop_running_jobs(before, work)
    if stopped:          # Ctrl-C / SIGTERM: the cleanup is done; native libraries' teardown at
        _exit_now(0)     # interpreter exit held the process ~5 s more
    return 0


def _exit_now(code: int) -> None:
    """Leave at once after the app's cleanup: the exit handlers run, then no native teardown."""
    import atexit  # noqa: PLC0415

    atexit._run_exitfuncs()                  # e.g. the default work folder's removal
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stop_running_jobs(before: set[threading.Thread], work: Any) -> None:
    """Give a job still running (a worker thread the app started) :data:`STOP_GRACE_S` to finish;
    then leave without it, its files deleted (the interpreter would wait for it to the end)."""
    from facegen.app.context import remove_user_files  # noqa: PLC0415

    deadline = time.monotonic() + STOP_GRACE_S
    for t in set(threading.enumerate()) - before:
        if not t.daemon and t is not threading.current_thread():
            t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in set(threading.enumerate()) - before):
        print(f"facegen web demo: a running job did not finish within {STOP_GRACE_S:.0f} s; stopped with the app",
              flush=True)
        remove_user_files(work)
        _exit_now(0)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("serve", help="the web demo (Gradio) on http://127.0.0.1:7860")
    add_serve_options(p)
    p.set_defaults(func=run_serve)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python app.py``: the same options and exit policy as ``facegen serve``."""
    from facegen.cli import run_command, setup_logging  # noqa: PLC0415 - the package imports this module

    p = argparse.ArgumentParser(prog="app.py", description="The facegen web demo.")
    add_serve_options(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    return run_command(run_serve, args, debug=args.debug)
