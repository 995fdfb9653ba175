"""Load pipeline components from a resolved folder, strictly and safely.

Every loader refuses a checkpoint with missing, unexpected or mis-shaped keys (the message
names them), reads safetensors where the release ships them, and reads the few released
pickles (Arc2Face ``encoder/pytorch_model.bin``, adapter ``.bin`` files) with
``torch.load(weights_only=True)`` only.  No ``trust_remote_code``, no network.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facegen.errors import FacegenError, InvalidArgumentError, ModelFileError, ModelNotFoundError

logger = logging.getLogger(__name__)

#: largest JSON config / tokenizer file read (real ones are a few KB; vocab.json ~1 MB)
MAX_JSON_BYTES = 16 * 1024 * 1024
#: largest safetensors header (real ones are well under 1 MB)
MAX_SAFETENSORS_HEADER = 64 * 1024 * 1024
#: bounds on scheduler and tokenizer configs, checked before diffusers/transformers see them
MAX_TRAIN_TIMESTEPS = 10_000
MAX_MODEL_MAX_LENGTH = 4096
_SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                       "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class _DropEmptyFloat32Notice(logging.Filter):
    """diffusers says "There are modules in X that should be kept in float32: []" on every
    ``.to(dtype)`` of a model with an empty list: nothing to keep, nothing to say."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


def _install_log_filters() -> None:
    target = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(f, _DropEmptyFloat32Notice) for f in target.filters):
        target.addFilter(_DropEmptyFloat32Notice())


_install_log_filters()


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).strip().splitlines()[:1]) if str(exc).strip() else type(exc).__name__
    return text[:200]


@contextlib.contextmanager
def model_file_errors(path: Path | str, what: str = "cannot be loaded") -> Iterator[None]:
    """Turn any failure while reading model files under ``path`` into one :class:`ModelFileError`
    line naming it (facegen's own errors pass through unchanged)."""
    try:
        yield
    except FacegenError:
        raise
    except MemoryError:
        raise ModelFileError(path, f"{what}: it asks for more memory than this machine has") from None
    except Exception as exc:  # noqa: BLE001 - a broken or hostile model file is the user's side
        raise ModelFileError(path, f"{what}: {type(exc).__name__}: {_first_line(exc)}") from exc


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON config that must be an object (not a list, not NaN-laden, not huge)."""
    import json
    import math

    def _no_constants(name: str) -> Any:
        raise ValueError(f"non-JSON number {name}")

    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ModelFileError(path, f"is {size:,} bytes; a config over {MAX_JSON_BYTES:,} bytes is refused")
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constants)
    except ModelFileError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(path, f"is not valid JSON ({_first_line(exc)})") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(path, f"must hold a JSON object, got a {type(data).__name__}")
    for key, value in data.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ModelFileError(path, f"'{key}' is not a finite number")
    return data


def check_safetensors(path: Path) -> None:
    """Check a safetensors file's header against its size before anything reads tensors:
    a truncated, zeroed or foreign file gets one line saying so."""
    import json
    import struct

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelFileError(path, f"is not a safetensors file ({size} bytes: truncated or empty)")
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > MAX_SAFETENSORS_HEADER or n + 8 > size:
                raise ModelFileError(path, f"is not a safetensors file or is truncated (header of {n:,} bytes "
                                           f"in a file of {size:,})")
            raw = fh.read(n)
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(path, "is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "is not a safetensors file (its header is not a JSON object)")
    body = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            count = 1
            for d in info["shape"]:
                count *= int(d)
            itemsize = _SAFETENSORS_DTYPES[info["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(path, f"is not a safetensors file (bad entry for tensor '{name[:80]}')") from None
        if not 0 <= begin <= end or end - begin != count * itemsize:
            raise ModelFileError(path, f"is corrupt (tensor '{name[:80]}' has inconsistent offsets)")
        if end > body:
            raise ModelFileError(path, f"is truncated ({size:,} bytes; tensor '{name[:80]}' ends at byte "
                                       f"{8 + n + end:,})")

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "flow-euler": ("FlowMatchEulerDiscreteScheduler", {}),
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


def check_info(info: dict[str, Any], what: str) -> None:
    bad = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad or info.get("error_msgs"):
        detail = "; ".join(f"{k}: {', '.join(map(str, v[:3]))}{' …' if len(v) > 3 else ''}" for k, v in bad.items())
        raise InvalidArgumentError(f"{what} does not match its config ({detail or info.get('error_msgs')}); "
                                   "the file is truncated or belongs to another model")


def need_files(folder: Path, *names: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise ModelNotFoundError(str(folder), missing, folder)


def load_diffusers_model(cls: Any, folder: Path, dtype: Any) -> Any:
    """A diffusers ModelMixin (UNet, VAE, ControlNet) from ``folder`` with a strict key check."""
    need_files(folder, "config.json", "diffusion_pytorch_model.safetensors")
    read_json_object(folder / "config.json")
    weights = folder / "diffusion_pytorch_model.safetensors"
    check_safetensors(weights)
    with model_file_errors(weights, f"cannot be loaded as a {cls.__name__}"):
        model, info = cls.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True,
                                          low_cpu_mem_usage=True, output_loading_info=True, local_files_only=True)
    check_info(info, f"{cls.__name__} weights in {folder}")
    return model.eval()


def dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56."""
    import re

    import transformers

    major_minor = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    key = "dtype" if major_minor >= (4, 56) else "torch_dtype"
    return {key: dtype}


def load_text_encoder(cls: Any, folder: Path, dtype: Any) -> Any:
    """A transformers CLIP text model from ``model.safetensors`` (strict)."""
    need_files(folder, "config.json", "model.safetensors")
    read_json_object(folder / "config.json")
    weights = folder / "model.safetensors"
    check_safetensors(weights)
    with model_file_errors(weights, f"cannot be loaded as a {cls.__name__}"):
        model, info = cls.from_pretrained(folder, use_safetensors=True, output_loading_info=True,
                                          local_files_only=True, **dtype_kwarg(dtype))
    check_info(info, f"{cls.__name__} weights in {folder}")
    return model.eval()


def load_text_encoder_pickle(folder: Path, dtype: Any) -> Any:
    """Arc2Face's fine-tuned CLIP text encoder, shipped as ``pytorch_model.bin``.

    The pickle is read by :func:`load_pickle_state` (``weights_only=True``) and loaded
    strictly into a ``CLIPTextModel`` built from ``config.json``; the released keys carry the
    ``text_model.`` prefix of transformers 4.x, mapped to the installed layout here.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    need_files(folder, "config.json", "pytorch_model.bin")
    read_json_object(folder / "config.json")
    with model_file_errors(folder / "config.json", "is not a CLIP text config"):
        config = CLIPTextConfig.from_pretrained(folder, local_files_only=True)
    model = CLIPTextModel(config)
    own = set(model.state_dict())
    state = {k: v for k, v in load_pickle_state(folder / "pytorch_model.bin").items()
             if not k.endswith("embeddings.position_ids")}  # a buffer some old exports saved
    if not any(k.startswith("text_model.") for k in own):
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        check_info({"missing_keys": missing, "unexpected_keys": unexpected}, f"CLIP text encoder in {folder}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise InvalidArgumentError(f"CLIP text encoder in {folder} does not match its config: {exc}") from exc
    return model.to(dtype).eval()


def load_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    need_files(folder, "vocab.json", "merges.txt")
    check_tokenizer_files(folder)
    with model_file_errors(folder, "cannot be loaded as a CLIP tokenizer"):
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def check_tokenizer_files(folder: Path) -> None:
    """vocab.json an object of int ids, merges.txt UTF-8 text, and bounded lengths in
    tokenizer_config.json (``model_max_length: 1e12`` made the Rust tokenizer panic)."""
    vocab = read_json_object(folder / "vocab.json")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab.values()):
        raise ModelFileError(folder / "vocab.json", "the vocab must map tokens to integer ids")
    merges = folder / "merges.txt"
    try:
        if merges.stat().st_size > MAX_JSON_BYTES:
            raise ModelFileError(merges, f"is over {MAX_JSON_BYTES:,} bytes")
        merges.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(merges, "is not UTF-8 text") from None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if not (folder / name).is_file():
            continue
        cfg = read_json_object(folder / name)
        for key in ("model_max_length", "max_length"):
            if key in cfg and cfg[key] is not None:
                v = cfg[key]
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_MODEL_MAX_LENGTH:
                    raise ModelFileError(folder / name, f"'{key}' must be an integer in 1..{MAX_MODEL_MAX_LENGTH}, "
                                                        f"got {v!r}")


def load_safetensors_state(path: Path) -> dict[str, Any]:
    """A released ``.safetensors`` state dict (flat; no pickle), one line naming the file when unreadable."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelNotFoundError(path.name, [path.name], path.parent)
    with model_file_errors(path, "cannot be read as a safetensors checkpoint"):
        return load_file(str(path))


def load_pickle_state(path: Path) -> dict[str, Any]:
    """A released ``.bin`` state dict, read with ``weights_only=True`` (tensors and containers only)."""
    import torch

    if not path.is_file():
        raise ModelNotFoundError(path.name, [path.name], path.parent)
    import re

    try:
        with warnings.catch_warnings():   # torch's note on the pickle protocol is not the user's business
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            problem = f"holds Python objects, not only tensors ({found.group(1)}); facegen does not unpickle it"
        elif "weights only load failed" in str(exc).lower() or "weights_only" in str(exc):
            problem = "is not a weights-only checkpoint; facegen does not unpickle it"
        else:
            problem = f"is not a readable checkpoint ({type(exc).__name__}: {_first_line(exc)})"
        raise ModelFileError(path, problem) from None
    if not isinstance(state, dict):
        raise ModelFileError(path, f"does not hold a state dict (got a {type(state).__name__})")
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
    try:
        return cls.from_config(config, **overrides)
    except Exception as exc:  # noqa: BLE001 - the config came from a model folder
        raise InvalidArgumentError(f"scheduler '{name}' cannot use this scheduler config "
                                   f"({type(exc).__name__}: {_first_line(exc)})") from exc


def load_scheduler_config(folder: Path) -> dict[str, Any]:
    """``scheduler_config.json``, checked: an object with bounded, finite numbers
    (``num_train_timesteps: 3e9`` would allocate gigabytes of betas)."""
    import math

    need_files(folder, "scheduler_config.json")
    path = folder / "scheduler_config.json"
    config = read_json_object(path)
    steps = config.get("num_train_timesteps", 1000)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_TRAIN_TIMESTEPS:
        raise ModelFileError(path, f"'num_train_timesteps' must be an integer in 1..{MAX_TRAIN_TIMESTEPS}, "
                                   f"got {steps!r}")
    for key in ("beta_start", "beta_end"):
        v = config.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1):
            raise ModelFileError(path, f"'{key}' must be a number in (0, 1), got {v!r}")
    betas = config.get("trained_betas")
    if betas is not None:
        if not isinstance(betas, list) or len(betas) != steps or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in betas):
            raise ModelFileError(path, "'trained_betas' must be null or one finite number per training timestep")
    return config


def check_pipeline_class(repo_dir: Path, expected: str) -> None:
    """Refuse an SDXL folder where SD1.5 is expected (and vice versa) with a clear message."""
    index = repo_dir / "model_index.json"
    if not index.is_file():
        return
    got = read_json_object(index).get("_class_name", "")
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
