"""Load pipeline components from a resolved folder, strictly and safely.

Every loader refuses a checkpoint with missing, unexpected or mis-shaped keys (the message
names them), reads safetensors where the release ships them, and reads the few released
pickles (Arc2Face ``encoder/pytorch_model.bin``, adapter ``.bin`` files) with
``torch.load(weights_only=True)`` only.  No ``trust_remote_code``, no network.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError, ModelNotFoundError

logger = logging.getLogger(__name__)

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence per-file progress bars and load-time chatter of transformers/diffusers.

    Warnings that matter to facegen (missing keys, wrong files) are raised as errors by the
    loaders here; what is silenced is e.g. "image_encoder is not loaded since
    image_encoder_folder=None" (intended for FaceID) and the per-shard progress bars.
    """
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    was = (tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled())
    roots = [logging.getLogger("diffusers"), logging.getLogger("transformers")]
    levels = [r.level for r in roots]
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    for r in roots:
        r.setLevel(max(r.level, logging.ERROR))
    try:
        yield
    finally:
        for r, lvl in zip(roots, levels):
            r.setLevel(lvl)
        if was[0]:
            tlog.enable_progress_bar()
        if was[1]:
            dlog.enable_progress_bar()


def _check_info(info: dict[str, Any], what: str) -> None:
    bad = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad or info.get("error_msgs"):
        detail = "; ".join(f"{k}: {', '.join(map(str, v[:3]))}{' …' if len(v) > 3 else ''}" for k, v in bad.items())
        raise InvalidArgumentError(f"{what} does not match its config ({detail or info.get('error_msgs')}); "
                                   "the file is truncated or belongs to another model")


def _need(folder: Path, *names: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise ModelNotFoundError(str(folder), missing, folder)


def load_diffusers_model(cls: Any, folder: Path, dtype: Any) -> Any:
    """A diffusers ModelMixin (UNet, VAE, ControlNet) from ``folder`` with a strict key check."""
    _need(folder, "config.json", "diffusion_pytorch_model.safetensors")
    model, info = cls.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True,
                                      low_cpu_mem_usage=True, output_loading_info=True, local_files_only=True)
    _check_info(info, f"{cls.__name__} weights in {folder}")
    return model.eval()


def _dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56."""
    import re

    import transformers

    major_minor = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    key = "dtype" if major_minor >= (4, 56) else "torch_dtype"
    return {key: dtype}


def load_text_encoder(cls: Any, folder: Path, dtype: Any) -> Any:
    """A transformers CLIP text model from ``model.safetensors`` (strict)."""
    _need(folder, "config.json", "model.safetensors")
    model, info = cls.from_pretrained(folder, use_safetensors=True, output_loading_info=True,
                                      local_files_only=True, **_dtype_kwarg(dtype))
    _check_info(info, f"{cls.__name__} weights in {folder}")
    return model.eval()


def load_text_encoder_pickle(folder: Path, dtype: Any) -> Any:
    """Arc2Face's fine-tuned CLIP text encoder, shipped as ``pytorch_model.bin``.

    The pickle is read by :func:`load_pickle_state` (``weights_only=True``) and loaded
    strictly into a ``CLIPTextModel`` built from ``config.json``; the released keys carry the
    ``text_model.`` prefix of transformers 4.x, mapped to the installed layout here.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    _need(folder, "config.json", "pytorch_model.bin")
    config = CLIPTextConfig.from_pretrained(folder, local_files_only=True)
    model = CLIPTextModel(config)
    own = set(model.state_dict())
    state = {k: v for k, v in load_pickle_state(folder / "pytorch_model.bin").items()
             if not k.endswith("embeddings.position_ids")}  # a buffer some old exports saved
    if not any(k.startswith("text_model.") for k in own):
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        _check_info({"missing_keys": missing, "unexpected_keys": unexpected}, f"CLIP text encoder in {folder}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise InvalidArgumentError(f"CLIP text encoder in {folder} does not match its config: {exc}") from exc
    return model.to(dtype).eval()


def load_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    _need(folder, "vocab.json", "merges.txt")
    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def load_pickle_state(path: Path) -> dict[str, Any]:
    """A released ``.bin`` state dict, read with ``weights_only=True`` (tensors and containers only)."""
    import torch

    if not path.is_file():
        raise ModelNotFoundError(path.name, [path.name], path.parent)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidArgumentError(f"{path} cannot be read as a weights-only checkpoint ({exc}); "
                                   "facegen never unpickles arbitrary objects") from exc
    if not isinstance(state, dict):
        raise InvalidArgumentError(f"{path} does not hold a state dict")
    return state


def make_scheduler(name: str, config: Any) -> Any:
    """A scheduler by facegen name, configured from the base model's ``scheduler_config.json``."""
    import diffusers

    try:
        cls_name, overrides = SCHEDULERS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown scheduler '{name}'; choose one of: {', '.join(sorted(SCHEDULERS))}") from None
    cls = getattr(diffusers, cls_name)
    return cls.from_config(config, **overrides)


def load_scheduler_config(folder: Path) -> dict[str, Any]:
    import json

    _need(folder, "scheduler_config.json")
    return json.loads((folder / "scheduler_config.json").read_text(encoding="utf-8"))


def check_pipeline_class(repo_dir: Path, expected: str) -> None:
    """Refuse an SDXL folder where SD1.5 is expected (and vice versa) with a clear message."""
    import json

    index = repo_dir / "model_index.json"
    if not index.is_file():
        return
    got = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    if got and got != expected:
        raise InvalidArgumentError(f"{repo_dir} holds a {got}, but this preset needs a {expected} base")


def load_sd15_parts(repo_dir: Path, dtype: Any, with_unet_and_text: bool) -> dict[str, Any]:
    """vae, tokenizer, scheduler config (and unet, text_encoder) of an SD1.5 folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    check_pipeline_class(repo_dir, "StableDiffusionPipeline")
    parts: dict[str, Any] = {
        "vae": load_diffusers_model(AutoencoderKL, repo_dir / "vae", dtype),
        "tokenizer": load_tokenizer(repo_dir / "tokenizer"),
        "scheduler_config": load_scheduler_config(repo_dir / "scheduler"),
    }
    if with_unet_and_text:
        parts["unet"] = load_diffusers_model(UNet2DConditionModel, repo_dir / "unet", dtype)
        parts["text_encoder"] = load_text_encoder(CLIPTextModel, repo_dir / "text_encoder", dtype)
    return parts


#: keyword arguments every SDXL pipeline facegen builds gets: diffusers would otherwise add its own
#: ``dwtDct`` invisible watermark whenever ``invisible-watermark`` is installed (``add_watermarker``
#: defaults on), changing the pixels behind the caller's back with an unreliable mark
SDXL_PIPELINE_KWARGS: dict[str, Any] = {"add_watermarker": False}


def pipeline_kwargs(cls: Any) -> dict[str, Any]:
    """The facegen-wide constructor options ``cls`` (a diffusers pipeline class) takes."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in SDXL_PIPELINE_KWARGS.items() if k in params}


def load_sdxl_parts(repo_dir: Path, dtype: Any) -> dict[str, Any]:
    """All components of an SDXL base folder (scheduler as a config)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    check_pipeline_class(repo_dir, "StableDiffusionXLPipeline")
    return {
        "vae": load_diffusers_model(AutoencoderKL, repo_dir / "vae", dtype),
        "unet": load_diffusers_model(UNet2DConditionModel, repo_dir / "unet", dtype),
        "text_encoder": load_text_encoder(CLIPTextModel, repo_dir / "text_encoder", dtype),
        "text_encoder_2": load_text_encoder(CLIPTextModelWithProjection, repo_dir / "text_encoder_2", dtype),
        "tokenizer": load_tokenizer(repo_dir / "tokenizer"),
        "tokenizer_2": load_tokenizer(repo_dir / "tokenizer_2"),
        "scheduler_config": load_scheduler_config(repo_dir / "scheduler"),
    }
