"""IP-Adapter-FaceID: four ID tokens in IP attention plus the LoRA shipped in the ``.bin``.

Loaded through diffusers' own ``load_ip_adapter(state_dict, image_encoder_folder=None)``
(compat.md 2.4): ``image_proj`` (``proj.0``/``proj.2``/``norm``) becomes
``IPAdapterFaceIDImageProjection``, ``{k}.to_k_ip``/``{k}.to_v_ip`` (odd k) the IP attention,
and the ``{k}.to_*_lora`` keys a PEFT LoRA named ``faceid_0``.  The checkpoint is read once
with ``torch.load(weights_only=True)`` and checked key by key against the UNet first.

Conditioning: ``ip_adapter_image_embeds=[cat(zeros, e)]`` (negative first) with the
unit-norm buffalo_l vector.  Several identities in one picture: one region mask each
(``IPAdapterMaskProcessor``), the ID tokens of identity i only act inside mask i.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from facegen.adapters.base import ConditionRequest, IDAdapter, Sample
from facegen.adapters.regions import masks_tensor
from facegen.adapters.registry import register_family
from facegen.errors import InvalidArgumentError
from facegen.models import loading as L
from facegen.models.checkpoints import (
    check_state_dict,
    faceid_image_proj_shapes,
    ip_adapter_shapes,
    lora_rank_of,
)
from facegen.models.resolve import ResolvedPreset

logger = logging.getLogger(__name__)

FACEID_TOKENS = 4
LORA_ADAPTER = "faceid_0"


def check_faceid_checkpoint(state: dict[str, Any], unet: Any, id_dim: int, what: str) -> int | None:
    """Validate a FaceID payload against ``unet``; return its LoRA rank (None: no LoRA)."""
    if not {"image_proj", "ip_adapter"} <= set(state):
        raise InvalidArgumentError(f"{what} has no 'image_proj'/'ip_adapter' entries (keys: {sorted(state)[:5]})")
    proj, ip = state["image_proj"], state["ip_adapter"]
    if "proj.0.weight" not in proj or "norm.weight" not in proj:
        raise InvalidArgumentError(f"{what} is not an IP-Adapter-FaceID checkpoint (no proj.0/norm in image_proj)")
    rank = lora_rank_of(ip)
    check_state_dict(ip, ip_adapter_shapes(unet, lora_rank=rank), f"{what} ip_adapter")
    hidden = int(proj["proj.0.weight"].shape[0])
    check_state_dict(proj, faceid_image_proj_shapes(id_dim, unet.config.cross_attention_dim, hidden, FACEID_TOKENS),
                     f"{what} image_proj")
    return rank


@register_family
class FaceIDAdapter(IDAdapter):
    family = "faceid"
    display_names = ("IP-Adapter FaceID", "FaceID")
    supports_masks = True
    max_people = 4
    supports_lora_scale = True

    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        comp = self.preset.component("ip_adapter")
        path = resolved.file("ip_adapter")
        with L.quiet_loading():
            pipe = self._base_pipeline(resolved, dtype)
            state = L.load_pickle_state(path)
            rank = check_faceid_checkpoint(state, pipe.unet, self.preset.id_dim, path.name)
            pipe.load_ip_adapter(state, subfolder="", weight_name=comp.weight_name, image_encoder_folder=None,
                                 low_cpu_mem_usage=False)
        if rank is not None and LORA_ADAPTER not in getattr(pipe.unet, "peft_config", {}):
            raise InvalidArgumentError(f"the LoRA inside {path.name} was not applied (is peft installed?)")
        return pipe

    def _base_pipeline(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        from diffusers import (  # inside quiet_loading
            StableDiffusionPipeline,
            StableDiffusionXLPipeline,
        )

        repo = resolved.repo_dir("base")
        if self.preset.base == "sd15":
            parts = L.load_sd15_parts(repo, dtype, with_unet_and_text=True)
            scheduler = L.make_scheduler(self.preset.defaults.scheduler, parts.pop("scheduler_config"))
            return StableDiffusionPipeline(**parts, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           image_encoder=None, requires_safety_checker=False)
        parts = L.load_sdxl_parts(repo, dtype)
        scheduler = L.make_scheduler(self.preset.defaults.scheduler, parts.pop("scheduler_config"))
        return StableDiffusionXLPipeline(**parts, scheduler=scheduler, image_encoder=None, feature_extractor=None,
                                         **L.pipeline_kwargs(StableDiffusionXLPipeline))

    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        kwargs = self.ip_condition(pipe, samples, request, embed_tail=())
        scale = self.setting(request, "adapter_scale")
        if request.masks is not None:                  # one identity per region
            n_ids = len(samples[0].identities)
            pipe.set_ip_adapter_scale([[scale] * n_ids])
            kwargs["cross_attention_kwargs"] = {
                "ip_adapter_masks": [masks_tensor(request.masks, request.height, request.width)]}
        else:
            pipe.set_ip_adapter_scale(scale)
        self.apply_lora_scale(pipe, request)
        return kwargs

    def apply_lora_scale(self, pipe: Any, request: ConditionRequest) -> None:
        """Weight the checkpoint's LoRA (when it has one) by the request's or the preset's scale;
        every other active adapter (an LCM or style LoRA on the same pipeline) keeps its weight."""
        if LORA_ADAPTER in getattr(pipe.unet, "peft_config", {}):
            set_adapter_weight(pipe.unet, LORA_ADAPTER, self.setting(request, "lora_scale"))


def set_adapter_weight(model: Any, name: str, weight: float) -> None:
    """Activate adapter ``name`` on ``model``'s PEFT layers at ``weight`` and leave every other
    active adapter as it is (active, at its own weight).  diffusers' ``set_adapters([name])``
    would instead switch every other adapter off."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        active = list(module.active_adapters)          # peft: always a list
        if name in getattr(module, "scaling", {}) and name not in active:
            module.set_adapter([*active, name])
        module.set_scale(name, float(weight))
