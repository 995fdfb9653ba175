"""Launch the demo with safe defaults.

- binds 127.0.0.1 unless a host is given; no share link unless asked for;
- uploads capped (``max_file_size`` per file; files and bytes per request, and every other
  request body, by :class:`~facegen.app.limits.LimitsMiddleware`), never fetched from a URL,
  and decoded only by facegen's hardened loader; deleted after the retention time;
- one model job at a time (every job event shares the ``gpu`` concurrency group with limit
  1) behind a bounded queue (``max_queue``): extra requests are refused, not piled up;
- no file outside the app's own temporary folder is served: ``allowed_paths`` is empty and
  the models folder and facegen home are blocked outright;
- no analytics, no server-side rendering (no Node), no MCP server.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from starlette.middleware import Middleware

from facegen.app.context import Janitor
from facegen.app.limits import DEFAULT_RETENTION_S, LimitsMiddleware, RequestLimits, UploadQuota
from facegen.paths import DEFAULT_ACCESS, facegen_home

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_FILE_SIZE = "10mb"
DEFAULT_MAX_QUEUE = 16

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _contains(folder: Path, path: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).expanduser().resolve())
        return True
    except ValueError:
        return False


def api_arity(app: Any) -> dict[str, int]:
    """How many values each API function takes, by api name and by fn_index (a call with fewer
    is refused with a message; Gradio alone answers ``{"error": null}``)."""
    out: dict[str, int] = {}
    for index, fn in getattr(app, "fns", {}).items():
        count = len(getattr(fn, "inputs", []) or [])
        out[str(index)] = count
        if getattr(fn, "api_name", None):
            out[str(fn.api_name)] = count
    return out


def launch(app: Any, host: str | None = None, port: int | None = None, *, share: bool = False,
           max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, max_queue: int = DEFAULT_MAX_QUEUE,
           prevent_thread_lock: bool = False, quiet: bool = False, inbrowser: bool = False,
           limits: RequestLimits | None = None, retention_s: float | None = None) -> Any:
    """Queue and launch ``app`` (a :func:`facegen.app.build_app` result); returns Gradio's
    ``(fastapi_app, local_url, share_url)``.

    limits: body / upload / files-per-request caps (:class:`facegen.app.limits.RequestLimits`;
        default 1 MB bodies, 40 MB and 8 files per upload).
    retention_s: uploads and results older than this are deleted while the app runs
        (default: the context's ``keep_results_s``, one hour).
    """
    ctx = getattr(app, "facegen_context", None)
    if ctx is not None:
        if retention_s is not None:
            ctx.keep_results_s = float(retention_s)
        janitor = getattr(app, "facegen_janitor", None)
        if janitor is None:
            app.facegen_janitor = Janitor(ctx.work_dir, ctx.keep_results_s).start()
    host = host or DEFAULT_HOST
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this address can use the app", host)
    if share:
        logger.warning("a public share link was requested: anyone with the link can use the app")
    blocked = [str(p) for p in (facegen_home(), (ctx.access if ctx else DEFAULT_ACCESS).root)
               if ctx is None or not _contains(p, ctx.work_dir)]
    limits = limits or RequestLimits()
    quota = UploadQuota(limits, ctx.work_dir if ctx is not None else None,
                        ctx.keep_results_s if ctx is not None else DEFAULT_RETENTION_S)
    app.queue(max_size=max_queue, default_concurrency_limit=1)
    return app.launch(
        server_name=host, server_port=port, share=share, inbrowser=inbrowser,
        max_file_size=max_file_size, allowed_paths=[], blocked_paths=blocked,
        show_error=False, ssr_mode=False, mcp_server=False, enable_monitoring=False,
        prevent_thread_lock=prevent_thread_lock, quiet=quiet, footer_links=["api"],
        app_kwargs={"middleware": [Middleware(LimitsMiddleware, limits=limits, quota=quota, arity=api_arity(app))]},
    )
