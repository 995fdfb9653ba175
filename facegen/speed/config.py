"""The fast path's options (:class:`FastPathConfig`) and the record of what the engine applied
(:class:`AppliedFastPath`): plain data that :mod:`facegen.speed.engine` and
:mod:`facegen.speed.torch_compile` both read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from facegen.choices import DTYPE
from facegen.errors import InvalidArgumentError

#: the torch dtype of each DTYPE choice (fp32, fp16, bf16: same order)
_DTYPES: dict[str, torch.dtype] = dict(zip(DTYPE.values, (torch.float32, torch.float16, torch.bfloat16)))


@dataclass(frozen=True)
class FastPathConfig:
    """Engine options for :func:`optimize_pipeline`.  All of them keep the pixels (``exact``).

    dtype: ``'auto'`` | ``'fp32'`` | ``'fp16'`` | ``'bf16'``.  ``'auto'``: on CUDA the pipeline's
        own half dtype (fp16 when it is in fp32); fp32 on CPU.
    vae_fp32_decode: keep the VAE in fp32 and cast latents to it.  ``None`` (auto): only where
        the pipeline itself would upcast (an SDXL-style pipeline whose VAE has ``force_upcast``),
        so the pixels stay those of the plain pipeline.  ``True`` on an SD1.5 fp16 pipeline is
        *more* accurate than the reference, not identical to it.
    sdpa: replace legacy ``AttnProcessor`` by ``AttnProcessor2_0`` (scaled_dot_product_attention).
    fuse_qkv: fuse the q/k/v projections (kept off modules whose processors are not the stock
        ones, e.g. IP-Adapter's, which would otherwise be replaced, and off modules carrying
        unmerged LoRA layers, whose LoRA the fused projections would drop; a LoRA loaded after
        fusing unfuses the module before its next forward). The fast path never changes what a
        loaded LoRA does.
    channels_last: NHWC memory format for the conv nets.
    compile: ``torch.compile`` the denoisers (and the VAE decoder with ``compile_vae``).
        Only on CUDA unless ``compile_on_cpu`` (needs a C++ compiler; slow to start).
    compile_mode: ``None``: ``'reduce-overhead'`` with ``cuda_graphs`` else ``'default'``.
    cuda_graphs: capture CUDA graphs (static shapes; one graph per batch size).
    cudnn_benchmark: let cuDNN pick the fastest conv algorithm per shape (process-wide flag).
    inductor_tuning: the inductor flags diffusers recommends for UNets (1x1 conv as matmul,
        coordinate-descent tuning, no epilogue fusion; process-wide); CUDA only, longer compile.
    compile_cache_dir: persistent inductor/triton cache; ``None``: ``cache_dir()/torchinductor``
        unless ``TORCHINDUCTOR_CACHE_DIR`` is already set.
    """

    dtype: str = "auto"
    vae_fp32_decode: bool | None = None
    sdpa: bool = True
    fuse_qkv: bool = True
    channels_last: bool = True
    compile: bool = False
    compile_mode: str | None = None
    compile_vae: bool = True
    compile_on_cpu: bool = False
    cuda_graphs: bool = False
    cudnn_benchmark: bool = False
    inductor_tuning: bool = False
    compile_cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in _DTYPES:
            raise InvalidArgumentError(f"dtype {self.dtype!r} is not one of 'auto', {', '.join(map(repr, _DTYPES))}")

    @classmethod
    def default_for(cls, device: str | torch.device, interactive: bool = False) -> FastPathConfig:
        """The exact options worth having on ``device``.  CUDA: compile + CUDA graphs + cuDNN
        autotuning — unless ``interactive`` (a few images per process, e.g. one ``facegen
        generate``), where minutes of compilation would cost more than they save.  CPU: the eager
        options only (compiling needs a C++ toolchain and minutes of start-up)."""
        dev = torch.device(device)
        if dev.type == "cuda":
            return cls(compile=not interactive, cuda_graphs=not interactive, cudnn_benchmark=True)
        return cls()

    def replace(self, **changes: Any) -> FastPathConfig:
        return dataclasses.replace(self, **changes)

    def resolved_dtype(self, device: torch.device, current: torch.dtype) -> torch.dtype:
        if self.dtype != "auto":
            return _DTYPES[self.dtype]
        if device.type == "cuda":
            return current if current in (torch.float16, torch.bfloat16) else torch.float16
        return torch.float32

    def resolved_compile_mode(self) -> str:
        if self.compile_mode:
            return self.compile_mode
        return "reduce-overhead" if self.cuda_graphs else "default"


@dataclass
class AppliedFastPath:
    """What :func:`optimize_pipeline` did to a pipeline (kept on it; see :func:`applied_options`)."""

    config: FastPathConfig
    device: str
    dtype: str
    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
