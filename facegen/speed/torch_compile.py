"""``torch.compile`` for the engine: in-place compilation of a pipeline's denoisers and VAE
decoder, static shapes, CUDA graphs where the device has them, and a persistent inductor cache
under ``facegen.paths.cache_dir()/torchinductor`` (the second process loads kernels instead of
re-tuning them)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from facegen.paths import cache_dir

if TYPE_CHECKING:
    from facegen.speed.config import AppliedFastPath, FastPathConfig

logger = logging.getLogger(__name__)

#: the pipeline components the engine acts on and compiles (each one, when present and an nn.Module)
DENOISER_NAMES: tuple[str, ...] = ("unet", "controlnet")


def _torch_default_cache_dir() -> str | None:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # pragma: no cover - older torch
        return None
    return os.path.abspath(default_cache_dir())


def set_compile_cache(directory: str | os.PathLike[str] | None = None) -> str:
    """Point inductor's (and triton's) persistent cache at ``directory`` (default
    ``cache_dir()/torchinductor``) unless ``TORCHINDUCTOR_CACHE_DIR`` is set already; returns it.
    The second process to compile the same model loads kernels instead of re-tuning them."""
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if env and directory is None and os.path.abspath(env) != _torch_default_cache_dir():
        return env                                 # the user's choice (torch writes its default there too)
    path = os.fspath(directory) if directory is not None else os.fspath(cache_dir() / "torchinductor")
    os.makedirs(path, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
    except ImportError:  # pragma: no cover - torch without inductor
        pass
    return path


def _without_cuda_graphs(mode: str) -> str:
    return {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}.get(mode, mode)


def _compile(module: torch.nn.Module, mode: str) -> None:
    # in place: keeps the class (diffusers checks isinstance / reads .config on pipeline modules)
    module.compile(fullgraph=False, dynamic=False, mode=mode)


def apply_compile(pipe: Any, cfg: FastPathConfig, device: torch.device, rec: AppliedFastPath) -> None:
    """Compile ``pipe``'s denoisers (and, with ``cfg.compile_vae``, its VAE decoder) in place with
    ``cfg``'s mode, recording what was done in ``rec``."""
    cache = set_compile_cache(cfg.compile_cache_dir)
    mode = cfg.resolved_compile_mode()
    if device.type != "cuda":
        mode = _without_cuda_graphs(mode)          # CUDA graphs exist on CUDA only
    if device.type == "cuda" and cfg.inductor_tuning:
        import torch._inductor.config as inductor_config

        inductor_config.conv_1x1_as_mm = True
        inductor_config.coordinate_descent_tuning = True
        inductor_config.epilogue_fusion = False
        inductor_config.coordinate_descent_check_all_directions = True
    _raise_recompile_limit(16)
    targets = [(n, getattr(pipe, n)) for n in DENOISER_NAMES if isinstance(getattr(pipe, n, None), torch.nn.Module)]
    vae = getattr(pipe, "vae", None)
    if cfg.compile_vae and isinstance(getattr(vae, "decoder", None), torch.nn.Module):
        # no CUDA graphs for the decoder: it runs once per batch, so there is no launch overhead to save
        targets.append(("vae.decoder", vae.decoder))
    for name, m in targets:
        if getattr(m, "_compiled_call_impl", None) is not None:
            rec.skipped[f"{name} compile"] = "already compiled"
            continue
        m_mode = _without_cuda_graphs(mode) if name == "vae.decoder" else mode
        _compile(m, m_mode)
        rec.applied.append(f"{name} compile({m_mode})")
    rec.applied.append(f"compile cache {cache}")


def _raise_recompile_limit(at_least: int) -> None:
    """Room for one graph per static batch shape (dataset batches are padded to a few sizes;
    dynamo's default limit of 8 per function would otherwise send later shapes to eager mode)."""
    try:
        import torch._dynamo.config as dynamo_config
    except ImportError:  # pragma: no cover - torch without dynamo
        return
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(int(getattr(dynamo_config, name)), at_least))
            return
