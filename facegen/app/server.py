"""Launch the demo with safe defaults.

- binds 127.0.0.1 unless a host is given; no share link unless asked for;
- uploads capped (``max_file_size``) and decoded only by facegen's hardened loader;
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

from facegen.paths import facegen_home, models_dir

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


def launch(app: Any, host: str | None = None, port: int | None = None, *, share: bool = False,
           max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, max_queue: int = DEFAULT_MAX_QUEUE,
           prevent_thread_lock: bool = False, quiet: bool = False, inbrowser: bool = False) -> Any:
    """Queue and launch ``app`` (a :func:`facegen.app.build_app` result); returns Gradio's
    ``(fastapi_app, local_url, share_url)``."""
    ctx = getattr(app, "facegen_context", None)
    host = host or DEFAULT_HOST
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this address can use the app", host)
    if share:
        logger.warning("a public share link was requested: anyone with the link can use the app")
    blocked = [str(p) for p in (facegen_home(), models_dir(ctx.models_dir if ctx else None))
               if ctx is None or not _contains(p, ctx.work_dir)]
    app.queue(max_size=max_queue, default_concurrency_limit=1)
    return app.launch(
        server_name=host, server_port=port, share=share, inbrowser=inbrowser,
        max_file_size=max_file_size, allowed_paths=[], blocked_paths=blocked,
        show_error=False, ssr_mode=False, mcp_server=False, enable_monitoring=False,
        prevent_thread_lock=prevent_thread_lock, quiet=quiet, footer_links=["api"],
    )
