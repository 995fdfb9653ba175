"""Tiny random-weight FLUX.1 and InfiniteYou repositories in the released hub layouts.

``facegen-tiny/FLUX.1-dev`` mirrors ``black-forest-labs/FLUX.1-dev`` file for file
(:func:`facegen.models.registry.flux_base_files`): ``model_index.json``, the flow-matching
scheduler config, a CLIP-L-shaped ``text_encoder/`` + BPE ``tokenizer/``, a T5 encoder in 2
safetensors shards + index (``text_encoder_2/``) with a unigram ``tokenizer_2/``
(``tokenizer.json`` and a sentencepiece ``spiece.model`` over the same pieces), a
``FluxTransformer2DModel`` in 3 shards + index and a 16-channel-style VAE (here 4 latent
channels).  ``facegen-tiny/InfiniteYou`` holds ``infu_flux_v1.0/{aes_stage2,sim_stage1}/``
with ``InfuseNetModel/`` (a ``FluxControlNetModel`` in 2 shards + index, as released) and ``image_proj_model.bin`` =
``{"image_proj": Resampler state}`` under upstream's key names.  The builders register with
:mod:`facegen.models.tiny` (found as a ``tiny_*`` module) and are seeded per component.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from facegen.models import registry as R
from facegen.models.checkpoints import resampler_shapes
from facegen.models.tiny import (
    BUILDERS,
    SPECS,
    model_index,
    random_state,
    save_text_encoder,
    seeded,
    write_json,
)
from facegen.models.tiny_tokenizer import WORDS, write_tokenizer

TEXT_HIDDEN = 32                 # CLIP pooled width (released 768) and T5 width (released 4096)
LATENT_CHANNELS = 4              # released FLUX VAE: 16
TRANSFORMER: dict[str, Any] = dict(
    patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=1, num_single_layers=1, attention_head_dim=16,
    num_attention_heads=2, joint_attention_dim=TEXT_HIDDEN, pooled_projection_dim=TEXT_HIDDEN,
    guidance_embeds=True, axes_dims_rope=(4, 6, 6))
INFUSENET: dict[str, Any] = {k: v for k, v in TRANSFORMER.items()} | dict(conditioning_embedding_channels=None)
VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=64, block_out_channels=(16, 32),
    layers_per_block=1, norm_num_groups=16, down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, scaling_factor=0.3611, shift_factor=0.1159, force_upcast=True,
    use_quant_conv=False, use_post_quant_conv=False)
T5: dict[str, Any] = dict(d_model=TEXT_HIDDEN, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, relative_attention_max_distance=16,
                          feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
                          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
#: FLUX.1-dev's scheduler_config.json
SCHEDULER: dict[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
    "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
    "use_dynamic_shifting": True}
RESAMPLER = dict(dim=128, depth=4, dim_head=64, num_queries=8, ff_mult=4)   # released: 1280 (20 heads), 4, 64, 8, 4
T5_SPECIALS = ("<pad>", "</s>", "<unk>")
STAGES = ("aes_stage2", "sim_stage1")


# ----------------------------------------------------------------------------- files

def _shard(folder: Path, state: dict[str, Any], stem: str, n: int, index_name: str) -> None:
    """Write ``state`` as ``n`` safetensors shards + a hub-style index (tensor → shard)."""
    from safetensors.torch import save_file

    keys = sorted(state)
    per = -(-len(keys) // n)
    weight_map, total = {}, 0
    for i in range(n):
        name = f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i * per:(i + 1) * per]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    write_json(folder / index_name, {"metadata": {"total_size": total}, "weight_map": weight_map})


def _save_sharded_model(model: Any, folder: Path, stem: str, n: int, index_name: str) -> None:
    """``save_pretrained`` (config + tensors as the library writes them), then re-cut into ``n`` shards."""
    import tempfile

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        state = {}
        for f in sorted(Path(tmp).glob("*.safetensors")):
            state.update(load_file(str(f)))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_bytes((Path(tmp) / "config.json").read_bytes())
    _shard(folder, state, stem, n, index_name)


def t5_pieces() -> list[tuple[str, float]]:
    """The tiny T5 vocabulary: specials, one piece per word (``▁word``), then single characters."""
    pieces = [(p, 0.0) for p in T5_SPECIALS] + [("\u2581" + w, -float(i + 1)) for i, w in enumerate(WORDS)]
    chars = sorted({c for w in WORDS for c in w} | set("0123456789.,!?'-\u2581"))
    return pieces + [(c, -100.0) for c in chars]


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def spiece_model(pieces: list[tuple[str, float]]) -> bytes:
    """A sentencepiece ``ModelProto`` (unigram) over ``pieces``, serialised by hand (protobuf wire
    format): pieces (text, score, type: 2 = unknown, 3 = control, 1 = normal), trainer spec
    (model type unigram, T5's ids pad 0 / eos 1 / unk 2, no bos)."""
    body = b""
    for text, score in pieces:
        kind = 2 if text == "<unk>" else 3 if text in T5_SPECIALS else 1
        piece = _field(1, text.encode()) + b"\x15" + struct.pack("<f", score) + _varint(3 << 3) + _varint(kind)
        body += _field(1, piece)
    trainer = (_varint(3 << 3) + _varint(1) + _varint(40 << 3) + _varint(2) + _varint(41 << 3) + _varint(-1)
               + _varint(42 << 3) + _varint(1) + _varint(43 << 3) + _varint(0))
    normalizer = _field(1, b"identity") + _varint(3 << 3) + _varint(1)   # name, add_dummy_prefix
    return body + _field(2, trainer) + _field(3, normalizer)


def write_t5_tokenizer(folder: Path) -> None:
    """``tokenizer.json`` (unigram, metaspace, ``</s>`` appended), ``spiece.model`` over the same
    pieces, and the two configs of FLUX.1-dev's ``tokenizer_2/``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pieces = t5_pieces()
    tok = Tokenizer(models.Unigram(pieces, unk_id=T5_SPECIALS.index("<unk>")))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    eos = T5_SPECIALS.index("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "spiece.model").write_bytes(spiece_model(pieces))
    special = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    write_json(folder / "special_tokens_map.json", special)
    write_json(folder / "tokenizer_config.json", {**special, "model_max_length": 512, "extra_ids": 0,
                                                  "additional_special_tokens": [], "tokenizer_class": "T5Tokenizer"})


# ----------------------------------------------------------------------------- builders

def _build_flux(dst: Path) -> None:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    write_json(dst / "model_index.json", model_index("FluxPipeline", {
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"]}))
    write_json(dst / "scheduler" / "scheduler_config.json", SCHEDULER)
    write_tokenizer(dst / "tokenizer")
    save_text_encoder(dst / "text_encoder", "flux/text_encoder", TEXT_HIDDEN, with_projection=False)
    write_t5_tokenizer(dst / "tokenizer_2")
    cfg = T5Config(vocab_size=len(t5_pieces()), **T5)
    cfg.architectures = ["T5EncoderModel"]
    with seeded("flux/text_encoder_2"):
        t5 = T5EncoderModel(cfg)
    _save_sharded_model(t5, dst / "text_encoder_2", "model", 2, "model.safetensors.index.json")
    with seeded("flux/transformer"):
        transformer = FluxTransformer2DModel(**TRANSFORMER)
    _save_sharded_model(transformer, dst / "transformer", "diffusion_pytorch_model", 3,
                        "diffusion_pytorch_model.safetensors.index.json")
    with seeded("flux/vae"):
        vae = AutoencoderKL(**VAE)
    vae.save_pretrained(dst / "vae", safe_serialization=True)


def image_proj_state_dict(stage: str) -> dict[str, dict[str, Any]]:
    """An InfiniteYou ``image_proj_model.bin`` payload: ``{"image_proj": Resampler}``."""
    shapes = resampler_shapes(embedding_dim=R.TINY_ID_DIM, dim=RESAMPLER["dim"], output_dim=TEXT_HIDDEN,
                              num_queries=RESAMPLER["num_queries"], depth=RESAMPLER["depth"],
                              dim_head=RESAMPLER["dim_head"], ff_mult=RESAMPLER["ff_mult"])
    with seeded(f"infiniteyou/{stage}/image_proj") as gen:
        return {"image_proj": random_state(shapes, gen)}


def _build_infiniteyou(dst: Path) -> None:
    import torch
    from diffusers import FluxControlNetModel

    for stage in STAGES:
        folder = dst / "infu_flux_v1.0" / stage
        with seeded(f"infiniteyou/{stage}/infusenet") as gen:
            net = FluxControlNetModel(**INFUSENET)
            # released ControlNets learn their zero-initialised output projections; random small
            # values here so the tiny InfuseNet visibly conditions the transformer, and the image
            # tokens' attention drawn to the 8 ID tokens (sharp keys, strong values) so that what
            # it injects depends visibly on the identity, as a trained InfuseNet's does
            with torch.no_grad():
                for name, p in net.named_parameters():
                    if name.startswith(("controlnet_blocks", "controlnet_single_blocks", "controlnet_x_embedder")):
                        p.copy_(0.4 * torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
                    elif name.endswith(("attn.norm_added_k.weight", "attn.norm_added_q.weight")):
                        p.mul_(20.0)
                    elif name.endswith("attn.add_v_proj.weight"):
                        p.mul_(4.0)
        _save_sharded_model(net, folder / "InfuseNetModel", "diffusion_pytorch_model", 2,
                            "diffusion_pytorch_model.safetensors.index.json")
        torch.save(image_proj_state_dict(stage), folder / "image_proj_model.bin")


BUILDERS[R.TINY_FLUX_DEV_REPO] = _build_flux
BUILDERS[R.TINY_INFINITEYOU_REPO] = _build_infiniteyou
SPECS["flux"] = json.dumps({"init": 3, "transformer": TRANSFORMER, "infusenet": INFUSENET, "vae": VAE, "t5": T5,
                            "scheduler": SCHEDULER, "resampler": RESAMPLER, "text": TEXT_HIDDEN, "stages": STAGES},
                           sort_keys=True, default=str)
