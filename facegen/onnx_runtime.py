"""onnxruntime sessions with an explicit, logged choice of execution provider."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from facegen.errors import InvalidArgumentError, MissingDependencyError

logger = logging.getLogger(__name__)


def resolve_providers(providers: str | Sequence[str] | None = None) -> list[str]:
    """``None``/``"auto"`` → CUDA when onnxruntime has it, else CPU; ``"cpu"``/``"cuda"`` or
    full provider names are taken as given (unknown ones refused)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("onnxruntime", feature="ONNX face models") from None
    available = ort.get_available_providers()
    if providers is None or providers == "auto":
        wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    else:
        names = [providers] if isinstance(providers, str) else list(providers)
        short = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "tensorrt": "TensorrtExecutionProvider", "coreml": "CoreMLExecutionProvider"}
        wanted = [short.get(p.lower(), p) for p in names]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise InvalidArgumentError(
                f"onnxruntime provider(s) not available: {', '.join(missing)} (available: {', '.join(available)})")
    return wanted


def create_session(path: str | Path, providers: str | Sequence[str] | None = None,
                   session_factory: Any = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` on the requested providers.

    ``session_factory`` replaces ``InferenceSession`` (tests pass a fake one).
    """
    chosen = resolve_providers(providers) if session_factory is None else list(providers or ["CPUExecutionProvider"])
    if session_factory is None:
        import onnxruntime as ort  # noqa: PLC0415
        session_factory = ort.InferenceSession
    session = session_factory(str(path), providers=chosen)
    used = session.get_providers() if hasattr(session, "get_providers") else chosen
    logger.info("onnxruntime: %s on %s", Path(path).name, ", ".join(used))
    return session
