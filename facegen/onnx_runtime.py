"""onnxruntime sessions with an explicit, logged choice of execution provider."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

from facegen.errors import FacegenError, InvalidArgumentError, MissingDependencyError, ModelFileError

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


#: onnxruntime log severity facegen uses: 3 = errors only (its coloured warnings, e.g. about
#: unused initialisers or provider fallbacks, are not the user's business)
ORT_LOG_SEVERITY = 3


def session_options() -> Any:
    """``SessionOptions`` with onnxruntime's own logging at errors only (``None`` without onnxruntime)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.log_severity_level = ORT_LOG_SEVERITY
    try:
        ort.set_default_logger_severity(ORT_LOG_SEVERITY)
    except Exception:  # noqa: BLE001 - older builds
        pass
    return options


def _takes_options(factory: Any) -> bool:
    import inspect  # noqa: PLC0415

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a C-implemented class: onnxruntime's own takes it
        return True
    return "sess_options" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def create_session(path: str | Path, providers: str | Sequence[str] | None = None,
                   session_factory: Any = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` on the requested providers.

    ``session_factory`` replaces ``InferenceSession`` (tests pass a fake one).
    """
    chosen = resolve_providers(providers) if session_factory is None else list(providers or ["CPUExecutionProvider"])
    options = session_options()
    if session_factory is None:
        import onnxruntime as ort  # noqa: PLC0415
        session_factory = ort.InferenceSession
    kwargs: dict[str, Any] = {"providers": chosen}
    if _takes_options(session_factory):
        kwargs["sess_options"] = options
    try:
        session = session_factory(str(path), **kwargs)
    except FacegenError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign .onnx file is the user's side
        text = " ".join(str(exc).split())
        text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)[:200]
        raise ModelFileError(path, f"is not a usable ONNX model ({text or type(exc).__name__})") from None
    used = session.get_providers() if hasattr(session, "get_providers") else chosen
    logger.info("onnxruntime: %s on %s", Path(path).name, ", ".join(used))
    return session
