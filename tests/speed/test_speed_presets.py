"""Named speed presets (facegen.speed.presets): pixel-changing ones are flagged, need their weights,
and do what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.errors import InvalidArgumentError
from facegen.speed.engine import clone_pipeline, optimize_pipeline
from facegen.speed.presets import FAST_PRESETS, apply_preset, get_fast_preset

pytest.importorskip("diffusers")

from _speed_helpers import STEPS, run, tiny_pipeline  # noqa: E402 - tests/ helper module


@pytest.fixture(scope="module")
def reference():
    return tiny_pipeline()


def test_presets_that_change_pixels_are_flagged():
    assert FAST_PRESETS["exact"].exact
    for name in ("lcm-4step", "early-cfg", "tiny-vae"):
        assert not FAST_PRESETS[name].exact, name
    with pytest.raises(InvalidArgumentError):
        get_fast_preset("turbo")


def test_early_cfg_cuts_the_unconditional_half_of_any_batch(reference):
    exact = clone_pipeline(reference)
    optimize_pipeline(exact)
    early = clone_pipeline(reference)
    kwargs = apply_preset(early, "early-cfg")
    seen: list[int] = []
    early.unet.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    a, b = run(exact, [0, 1]), run(early, [0, 1], **kwargs)
    cut = int(STEPS * FAST_PRESETS["early-cfg"].cfg_cutoff_ratio)
    assert seen == [4] * (cut + 1) + [2] * (STEPS - cut - 1)   # batch 2: CFG doubles to 4, then 2
    assert not np.array_equal(a, b)                              # not exact: flagged so


def test_presets_needing_weights_say_so(reference):
    with pytest.raises(InvalidArgumentError, match="LCM-LoRA"):
        apply_preset(clone_pipeline(reference), "lcm-4step")
    with pytest.raises(InvalidArgumentError, match="AutoencoderTiny"):
        apply_preset(clone_pipeline(reference), "tiny-vae")


def test_tiny_vae_preset_swaps_the_decoder(reference):
    from diffusers import AutoencoderTiny

    pipe = clone_pipeline(reference)
    torch.manual_seed(0)
    with pytest.raises(InvalidArgumentError, match="upsamples x8"):      # TAESD's x8 on a x2 pipeline
        apply_preset(pipe, "tiny-vae", tiny_vae=AutoencoderTiny())
    tiny = AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1))
    apply_preset(pipe, "tiny-vae", tiny_vae=tiny)
    assert pipe.vae is tiny
    assert run(pipe, [0]).shape == (1, 64, 64, 3)


def test_lcm_preset_wants_the_lcm_lora_not_any_lora(reference):
    """FaceID's own LoRA (``faceid_0``) is no LCM-LoRA: lcm-4step on it would switch to 4 LCM
    steps at guidance 1 with no LCM weights (ruined images), so it is refused; a LoRA loaded
    under an ``lcm`` adapter name is the one it needs."""
    from peft import LoraConfig

    config = LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    pipe = clone_pipeline(reference)
    pipe.unet.add_adapter(config, adapter_name="faceid_0")
    with pytest.raises(InvalidArgumentError, match="LCM-LoRA"):
        apply_preset(pipe, "lcm-4step")
    pipe.unet.add_adapter(config, adapter_name="lcm")
    assert apply_preset(pipe, "lcm-4step")["num_inference_steps"] == 4
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
