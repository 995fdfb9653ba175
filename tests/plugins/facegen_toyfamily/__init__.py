"""A family from outside facegen: "toyid", installed through the ``facegen.families`` entry point.

This package is what a third-party family looks like: its adapter (an ID vector projected by one
linear layer into an extra text token of a stock SD1.5 pipeline: "embedding → existing kwargs"),
its registry entry (one tiny preset) and its tiny builder (the projection's random weights in the
released-style safetensors layout).  Nothing in facegen names it: the tests install it with a
``.dist-info`` on ``sys.path`` and generate with it from the CLI, the app and the dataset job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facegen.adapters.base import ConditionRequest, IDAdapter, Sample
from facegen.adapters.batching import encode_prompts
from facegen.adapters.registry import register_family
from facegen.errors import InvalidArgumentError
from facegen.models import loading as L
from facegen.models import registry as R
from facegen.models import tiny as T
from facegen.models.resolve import ResolvedPreset

FAMILY = "toyid"
PRESET = "tiny-toyid"
TOY_REPO = "facegen-toy/ToyID"
TOY_FILE = "toy_projection.safetensors"


@register_family
class ToyIDAdapter(IDAdapter):
    family = FAMILY
    display_names = ("ToyID",)

    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        from diffusers import StableDiffusionPipeline
        from safetensors.torch import load_file

        with L.quiet_loading():
            parts = L.load_sd15_parts(resolved.repo_dir("base"), dtype, with_unet_and_text=True)
        path = resolved.repo_dir("projection") / TOY_FILE
        L.check_safetensors(path)
        state = load_file(str(path))
        weight = state["proj.weight"]
        hidden = parts["text_encoder"].config.hidden_size
        if tuple(weight.shape) != (hidden, self.preset.id_dim):
            raise InvalidArgumentError(f"{path}: projection is {tuple(weight.shape)}, the preset needs "
                                       f"({hidden}, {self.preset.id_dim})")
        pipe = StableDiffusionPipeline(
            vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
            scheduler=L.make_scheduler(self.preset.defaults.scheduler, parts["scheduler_config"]),
            safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)
        pipe.toy_projection = weight.to(dtype=parts["unet"].dtype)
        return pipe

    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        import torch

        self.check_samples(samples, request)
        prompt, negative = self.texts(request)
        cfg = self.do_cfg(pipe, request.guidance_scale)
        kwargs = encode_prompts(pipe, [prompt if s.prompt is None else s.prompt for s in samples],
                                [negative] * len(samples), cfg)
        vecs = torch.from_numpy(np.stack([self.id_vector(s.identities[0]) for s in samples]))
        scale = self.setting(request, "adapter_scale") or 1.0
        token = (vecs.to(pipe.toy_projection) @ pipe.toy_projection.T)[:, None, :] * scale   # (N, 1, hidden)
        emb = kwargs["prompt_embeds"]
        kwargs["prompt_embeds"] = torch.cat([emb, token.to(emb)], dim=1)
        if cfg:
            neg = kwargs["negative_prompt_embeds"]
            kwargs["negative_prompt_embeds"] = torch.cat([neg, torch.zeros_like(token).to(neg)], dim=1)
        return kwargs


def build_projection(dst: Path) -> None:
    """The tiny repository: a seeded random ``(text hidden, id dim)`` projection."""
    import torch
    from safetensors.torch import save_file

    with T.seeded(TOY_REPO) as gen:
        weight = 0.2 * torch.randn((T.SD15_TEXT_HIDDEN, R.TINY_ID_DIM), generator=gen)
    dst.mkdir(parents=True, exist_ok=True)
    save_file({"proj.weight": weight.contiguous()}, str(dst / TOY_FILE))


def _register() -> None:
    T.BUILDERS[TOY_REPO] = build_projection
    T.SPECS[TOY_REPO] = f"toyid v1: proj.weight ({T.SD15_TEXT_HIDDEN}, {R.TINY_ID_DIM})"
    R.register_preset(R.Preset(
        name=PRESET, family=FAMILY, base="sd15", encoder=R.TINY_ENCODER, normalise=True, id_dim=R.TINY_ID_DIM,
        components=(R.Component("base", R.TINY_SD15_REPO, R.sd15_base_files(with_unet_and_text=True)),
                    R.Component("projection", TOY_REPO, (TOY_FILE,))),
        defaults=R.SamplerDefaults(scheduler="ddim", steps=2, guidance=3.0, height=R.TINY_SIZE, width=R.TINY_SIZE,
                                   adapter_scale=1.0, prompt="photo of a person"),
        licence="toy family (tests), random weights", commercial_use=True, tiny=True,
        description="a family from another package: one projected ID token in a stock SD1.5 pipeline"))


_register()
