"""Load a FLUX.1 base (diffusers layout) strictly: sharded checkpoints, the T5 encoder and its
fast tokenizer, and optional 8-bit weights through diffusers' / transformers' own quantization
support (optimum-quanto, as upstream InfiniteYou's ``--quantize_8bit``).

FLUX.1-dev ships its transformer as 3 safetensors shards and T5-XXL as 2, each with a
``*.safetensors.index.json``; every shard's header is checked before anything reads tensors,
and missing / unexpected / mis-shaped keys are refused as for the other bases
(:mod:`facegen.models.loading`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError, ModelFileError
from facegen.models.loading import (
    check_info,
    dtype_kwarg,
    need_files,
    check_pipeline_class,
    check_safetensors,
    load_scheduler_config,
    load_text_encoder,
    load_tokenizer,
    model_file_errors,
    read_json_object,
)

#: memory options of :func:`load_flux_parts` (``quantize``): weight dtype of the big modules
QUANTIZE_CHOICES: tuple[str, ...] = ("8bit",)
#: the modules 8-bit weights apply to (upstream quantizes the transformer and T5; the VAE and
#: CLIP stay in bf16, as they are small and sensitive)
QUANTIZED_PARTS: tuple[str, ...] = ("transformer", "text_encoder_2", "controlnet")


def weight_files(folder: Path, stem: str) -> list[Path]:
    """The safetensors files of a checkpoint folder: ``<stem>.safetensors``, or the shards its
    ``<stem>.safetensors.index.json`` lists (each must be there)."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFileError(index, "has no 'weight_map' of tensor names to shard files")
        names = sorted({str(v) for v in weight_map.values()})
        if any("/" in n or "\\" in n or n.startswith(".") for n in names):
            raise ModelFileError(index, "names a shard outside its folder")
        need_files(folder, *names)
        return [folder / n for n in names]
    need_files(folder, single.name)
    return [single]


def quantization_config(quantize: str | None, library: str) -> Any:
    """diffusers' (``library='diffusers'``) or transformers' ``QuantoConfig`` for ``quantize``."""
    if quantize is None:
        return None
    if quantize not in QUANTIZE_CHOICES:
        raise InvalidArgumentError(f"unknown quantization '{quantize}'; choose one of: {', '.join(QUANTIZE_CHOICES)}")
    import importlib.util

    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.quanto") is None:
        raise InvalidArgumentError("8-bit weights need optimum-quanto: pip install 'facegen[flux]'")
    if library == "diffusers":
        from diffusers import QuantoConfig

        return QuantoConfig(weights_dtype="int8")
    from transformers import QuantoConfig as TQuantoConfig

    return TQuantoConfig(weights="int8")


def load_model(cls: Any, folder: Path, dtype: Any, stem: str = "diffusion_pytorch_model",
               quantize: str | None = None) -> Any:
    """A diffusers ModelMixin (single file or sharded) with a strict key check."""
    need_files(folder, "config.json")
    read_json_object(folder / "config.json")
    files = weight_files(folder, stem)
    for f in files:
        check_safetensors(f)
    extra = {}
    if quantize is not None:
        extra["quantization_config"] = quantization_config(quantize, "diffusers")
    with model_file_errors(folder, f"cannot be loaded as a {cls.__name__}"):
        model, info = cls.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True, low_cpu_mem_usage=True,
                                          output_loading_info=True, local_files_only=True, **extra)
    check_info(info, f"{cls.__name__} weights in {folder}")
    _check_stored_keys(cls, folder, files)
    return model.eval()


def _check_stored_keys(cls: Any, folder: Path, files: list[Path]) -> None:
    """The tensors the files hold are exactly the model's (diffusers does not report a tensor
    missing from a sharded checkpoint): compared with an empty-weights instance of the config."""
    from accelerate import init_empty_weights
    from safetensors import safe_open

    stored: set[str] = set()
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            stored.update(fh.keys())
    with init_empty_weights():
        expected = set(cls.from_config(cls.load_config(folder, local_files_only=True)).state_dict())
    missing, unexpected = sorted(expected - stored), sorted(stored - expected)
    if missing or unexpected:
        check_info({"missing_keys": missing, "unexpected_keys": unexpected}, f"{cls.__name__} weights in {folder}")


def load_t5_encoder(folder: Path, dtype: Any, quantize: str | None = None) -> Any:
    """FLUX's T5 encoder (``T5EncoderModel``, sharded), strict."""
    from transformers import T5EncoderModel

    need_files(folder, "config.json")
    read_json_object(folder / "config.json")
    for f in weight_files(folder, "model"):
        check_safetensors(f)
    extra = {}
    if quantize is not None:
        extra["quantization_config"] = quantization_config(quantize, "transformers")
    with model_file_errors(folder, "cannot be loaded as a T5EncoderModel"):
        model, info = T5EncoderModel.from_pretrained(folder, use_safetensors=True, output_loading_info=True,
                                                     local_files_only=True, **dtype_kwarg(dtype), **extra)
    check_info(info, f"T5EncoderModel weights in {folder}")
    return model.eval()


def load_t5_tokenizer(folder: Path) -> Any:
    """The fast T5 tokenizer from ``tokenizer.json`` (no sentencepiece needed)."""
    from transformers import T5TokenizerFast

    need_files(folder, "tokenizer.json", "tokenizer_config.json")
    read_json_object(folder / "tokenizer.json")
    cfg = read_json_object(folder / "tokenizer_config.json")
    length = cfg.get("model_max_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 4096):
        raise ModelFileError(folder / "tokenizer_config.json", f"'model_max_length' must be 1..4096, got {length!r}")
    with model_file_errors(folder, "cannot be loaded as a T5 tokenizer"):
        return T5TokenizerFast.from_pretrained(folder, local_files_only=True)


def load_flux_parts(repo_dir: Path, dtype: Any, quantize: str | None = None) -> dict[str, Any]:
    """Every component of a FLUX.1 base folder (scheduler as a config); ``quantize='8bit'``
    loads the transformer and T5 with int8 weights (optimum-quanto)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel

    check_pipeline_class(repo_dir, "FluxPipeline")
    return {
        "vae": load_model(AutoencoderKL, repo_dir / "vae", dtype),
        "transformer": load_model(FluxTransformer2DModel, repo_dir / "transformer", dtype, quantize=quantize),
        "text_encoder": load_text_encoder(CLIPTextModel, repo_dir / "text_encoder", dtype),
        "text_encoder_2": load_t5_encoder(repo_dir / "text_encoder_2", dtype, quantize=quantize),
        "tokenizer": load_tokenizer(repo_dir / "tokenizer"),
        "tokenizer_2": load_t5_tokenizer(repo_dir / "tokenizer_2"),
        "scheduler_config": load_scheduler_config(repo_dir / "scheduler"),
    }
