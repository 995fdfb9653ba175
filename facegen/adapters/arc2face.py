"""Arc2Face: the ID vector replaces the ``id`` token of "photo of a id person".

Arc2Face (foivospar/Arc2Face, compat.md 2.2) is a whole SD1.5 model fine-tuned on ArcFace
embeddings: its own UNet (``arc2face/``) and CLIP text encoder (``encoder/``, a weights-only
pickle).  Conditioning = the L2-normalised ID vector, zero-padded to the text width, written
over the token embedding of ``id`` before the encoder's position embeddings, causal
attention and final layer norm run; the CFG negative is the empty prompt through the same
encoder.  There is no text prompt (the model was overfitted to the fixed prompt, upstream
issue #18) and no adapter scale.

The substitution hooks the encoder's public input-embedding layer, so the rest of the
encoder runs as the installed transformers implements it (no private imports).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from facegen.adapters.base import ConditionRequest, IDAdapter, Sample
from facegen.adapters.registry import register_family
from facegen.adapters.batching import module_key, pipeline_cache
from facegen.errors import InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.models import loading as L
from facegen.models.resolve import ResolvedPreset

logger = logging.getLogger(__name__)

ARC2FACE_PROMPT = "photo of a id person"
ID_TOKEN = "id"


def id_token_id(tokenizer: Any) -> int:
    ids = tokenizer.encode(ID_TOKEN, add_special_tokens=False)
    if len(ids) != 1:
        raise InvalidArgumentError(f"the tokenizer splits '{ID_TOKEN}' into {len(ids)} tokens; "
                                   "Arc2Face needs it to be one token (wrong tokenizer folder?)")
    return int(ids[0])


def _tokenize(tokenizer: Any, text: str, n: int, device: Any) -> Any:
    ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return ids.repeat(n, 1).to(device)


def project_face_embs(text_encoder: Any, tokenizer: Any, id_vectors: Any) -> Any:
    """``(N, D)`` ID vectors → ``(N, 77, hidden)`` prompt embeddings of "photo of a id person".

    D may be smaller than the text width (512 → 768 released; 128 → 160 tiny): the vector is
    zero-padded, never projected or rescaled.
    """
    import torch
    import torch.nn.functional as F

    hidden = int(text_encoder.config.hidden_size)
    if id_vectors.ndim != 2 or id_vectors.shape[1] > hidden:
        raise InvalidArgumentError(f"ID vectors must be (N, D<= {hidden}), got {tuple(id_vectors.shape)}")
    device = next(text_encoder.parameters()).device
    n = id_vectors.shape[0]
    input_ids = _tokenize(tokenizer, ARC2FACE_PROMPT, n, device)
    where = input_ids == id_token_id(tokenizer)
    if not bool((where.sum(dim=1) == 1).all()):
        raise InvalidArgumentError(f"'{ARC2FACE_PROMPT}' must contain the id token exactly once")
    padded = F.pad(id_vectors, (0, hidden - id_vectors.shape[1]))

    def substitute(_module: Any, _args: Any, output: Any) -> Any:
        out = output.clone()
        out[where.to(out.device)] = padded.to(device=out.device, dtype=out.dtype)
        return out

    handle = text_encoder.get_input_embeddings().register_forward_hook(substitute)
    try:
        with torch.no_grad():
            return text_encoder(input_ids=input_ids)[0]
    finally:
        handle.remove()


def empty_prompt_embeds(text_encoder: Any, tokenizer: Any, n: int = 1) -> Any:
    """The CFG negative: the empty prompt through the (Arc2Face) text encoder."""
    import torch

    device = next(text_encoder.parameters()).device
    with torch.no_grad():
        return text_encoder(input_ids=_tokenize(tokenizer, "", n, device))[0]


@register_family
class Arc2FaceAdapter(IDAdapter):
    family = "arc2face"
    display_names = ("Arc2Face",)
    supports_prompt = False
    supports_adapter_scale = False

    def check_request(self, request: ConditionRequest, n_identities: int) -> None:
        if request.prompt is not None or request.negative_prompt is not None:
            raise InvalidArgumentError(
                f"preset '{self.preset.name}' (Arc2Face) takes no text prompt: the model was trained on the fixed "
                f"prompt '{ARC2FACE_PROMPT}' only; remove the prompt, or use a faceid-* or instantid preset for text")
        super().check_request(request, n_identities)

    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        with L.quiet_loading():
            from diffusers import StableDiffusionPipeline, UNet2DConditionModel

            parts = L.load_sd15_parts(resolved.repo_dir("base"), dtype, with_unet_and_text=False)
            unet = L.load_diffusers_model(UNet2DConditionModel, resolved.folder("unet"), dtype)
            text_encoder = L.load_text_encoder_pickle(resolved.folder("text_encoder"), dtype)
        if unet.config.cross_attention_dim != text_encoder.config.hidden_size:
            raise InvalidArgumentError(
                f"Arc2Face UNet cross-attention width {unet.config.cross_attention_dim} != text encoder width "
                f"{text_encoder.config.hidden_size}")
        if self.preset.id_dim > text_encoder.config.hidden_size:
            raise InvalidArgumentError("the ID vector is wider than the text encoder")
        scheduler = L.make_scheduler(self.preset.defaults.scheduler, parts["scheduler_config"])
        pipe = StableDiffusionPipeline(
            vae=parts["vae"], text_encoder=text_encoder, tokenizer=parts["tokenizer"], unet=unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, image_encoder=None,
            requires_safety_checker=False)
        id_token_id(pipe.tokenizer)
        if self.preset.has("lcm_lora"):
            comp = self.preset.component("lcm_lora")
            pipe.load_lora_weights(str(resolved.repo_dir("lcm_lora")), weight_name=comp.weight_name,
                                   adapter_name="lcm")
            logger.info("LCM-LoRA loaded: use 2-4 steps with guidance 1.0")
        return pipe

    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        self.check_samples(samples, request)
        return self._prompt_embeds(pipe, [s.identities[0] for s in samples], request.guidance_scale)

    def _prompt_embeds(self, pipe: Any, identities: Sequence[IDEmbedding], guidance_scale: float) -> dict[str, Any]:
        """One ID prompt per identity (``(K, 77, hidden)``) and, under CFG, the cached negative."""
        import torch

        vec = np.stack([self.id_vector(e) for e in identities])           # (K, D)
        te = pipe.text_encoder
        param = next(te.parameters())
        ids = torch.from_numpy(vec).to(device=param.device, dtype=param.dtype)
        kwargs: dict[str, Any] = {"prompt_embeds": project_face_embs(te, pipe.tokenizer, ids)}
        if self.do_cfg(pipe, guidance_scale):
            kwargs["negative_prompt_embeds"] = self.negative_embeds(pipe).expand(len(identities), -1, -1)
        return kwargs

    def negative_embeds(self, pipe: Any) -> Any:
        """The CFG negative ``(1, 77, hidden)``, encoded once per pipeline and reused."""
        te = pipe.text_encoder
        key = ("arc2face-uncond", module_key(te))
        return pipeline_cache(pipe).get(key, lambda: empty_prompt_embeds(te, pipe.tokenizer, 1))
