"""Time facegen's PuLID generation (SDXL v1.1, FLUX v0.9.1) against plain diffusers pipelines running the same injected modules.

In one process, same components, size, steps, guidance, seeds and ID tokens:

  (a) reference: diffusers' stock ``StableDiffusionXLPipeline`` / ``FluxPipeline`` built from the loaded
      components, the PuLID modules injected as facegen injects them (SDXL: the ID attention processors
      already on the UNet, the precomputed ID tokens passed as ``cross_attention_kwargs``; FLUX: the
      cross-attention blocks hooked after the DiT blocks by ``FluxIDInjection`` around the call), prompts
      as strings;
  (b) facegen: ``IDGenerationPipeline`` (``__call__(samples=...)``: the contract checks, the IDFormer,
      the cached prompt encoding, uint8 conversion).

Prints images/s of each, the ratio (b)/(a), the largest pixel difference between (a) and (b) (the same
images: 0, or 1 from float rounding) and peak memory (CUDA: peak allocated; CPU: the process's peak RSS).
On CUDA the GPU rows: bf16 (FLUX) / fp16 (SDXL), ``--offload`` (model CPU offload) and ``--quantize 8bit``
(FLUX: int8 transformer + T5 through diffusers' quanto config; upstream's fp8 + offload row is ~17 GB).

    python benchmarks/bench_pulid.py --small                         # tiny twins on CPU, ~1 min
    python benchmarks/bench_pulid.py --family flux --offload --quantize 8bit --accept-license   # GPU, real
    python benchmarks/bench_pulid.py --family sdxl --offload --accept-license                  # GPU, real
"""

from __future__ import annotations

import logging
import resource
import sys
from typing import Any

import numpy as np
import torch

from _common import RunStats, add_output_args, make_parser, setup_logging, timed, versions, write_json
from facegen.id.embedding import IDEmbedding
from facegen.paths import ModelAccess
from facegen.pipelines.generation import IDGenerationPipeline, Sample

logger = logging.getLogger("bench_pulid")


def identities(gen: IDGenerationPipeline, n: int) -> list[IDEmbedding]:
    """Random conditions of the preset's contract: vector + EVA hidden states (real: T = 577 tokens)."""
    former = getattr(gen.pipe, gen.adapter.idformer_attr)
    width = former.mapping_0[0].in_features
    tokens = 17 if gen.preset.tiny else 577
    rng = np.random.default_rng(0)
    return [IDEmbedding(rng.standard_normal(gen.preset.id_dim).astype(np.float32), gen.encoder,
                        meta={"vit_hidden": rng.standard_normal((5, tokens, width)).astype(np.float32)})
            for _ in range(n)]


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def plain_call(gen: IDGenerationPipeline, ids: list[IDEmbedding], seeds: list[int], steps: int) -> Any:
    """The reference (a): a stock diffusers pipeline on the same components and injected modules."""
    from diffusers import FluxPipeline, StableDiffusionXLPipeline

    from facegen.adapters.pulid import FluxIDInjection

    p, d = gen.pipe, gen.preset.defaults
    tokens, uncond = gen.adapter.id_tokens(p, ids)
    common = dict(num_inference_steps=steps, guidance_scale=d.guidance, height=d.height, width=d.width,
                  output_type="np")
    prompts = [d.prompt] * len(ids)
    if gen.preset.base == "flux":
        ref = FluxPipeline(transformer=p.transformer, vae=p.vae, text_encoder=p.text_encoder, tokenizer=p.tokenizer,
                           text_encoder_2=p.text_encoder_2, tokenizer_2=p.tokenizer_2, scheduler=p.scheduler)

        def run() -> np.ndarray:
            with FluxIDInjection(p.transformer, p.pulid_ca, tokens, d.adapter_scale, gen.adapter.id_start_step):
                out = ref(prompt=prompts, generator=[torch.Generator().manual_seed(s) for s in seeds], **common)
            return (out.images * 255).round().astype(np.uint8)
    else:
        ref = StableDiffusionXLPipeline(vae=p.vae, text_encoder=p.text_encoder, text_encoder_2=p.text_encoder_2,
                                        tokenizer=p.tokenizer, tokenizer_2=p.tokenizer_2, unet=p.unet,
                                        scheduler=p.scheduler)
        cfg = gen.adapter.do_cfg(p, d.guidance)
        ids_kw = {"id_embedding": (torch.cat([uncond, tokens]) if cfg else tokens).to(p.unet.dtype),
                  "id_scale": d.adapter_scale}

        def run() -> np.ndarray:
            out = ref(prompt=prompts, negative_prompt=[d.negative_prompt] * len(ids), cross_attention_kwargs=ids_kw,
                      generator=[torch.Generator().manual_seed(s) for s in seeds], **common)
            return (out.images * 255).round().astype(np.uint8)
    ref.set_progress_bar_config(disable=True)
    return run


def run_one(label: str, preset: str, args: Any, quantize: str | None, offload: bool) -> dict[str, Any]:
    gen = IDGenerationPipeline.from_preset(preset, access=ModelAccess(accept_license=args.accept_license,
                                                                      device=args.device), quantize=quantize)
    dev = gen.device
    if offload:
        gen.enable_model_cpu_offload()
    d = gen.preset.defaults
    steps = args.steps or d.steps
    ids = identities(gen, args.batch)
    seeds = list(range(args.batch))
    plain = plain_call(gen, ids, seeds, steps)

    def ours() -> np.ndarray:
        return np.stack(gen(samples=[Sample.of(e) for e in ids], seeds=seeds, num_inference_steps=steps,
                            batch_size=args.batch, progress=False, measure_similarity=False, output_type="np").images)

    diff = int(np.abs(ours().astype(int) - plain().astype(int)).max())    # also the warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    a, b = RunStats(), RunStats()
    for _ in range(args.repeats):                              # interleaved: the same machine load for both
        timed(plain, dev, a)
        timed(ours, dev, b)
    return {"label": label, "preset": preset, "device": str(dev), "dtype": str(gen.dtype).removeprefix("torch."),
            "size": f"{d.width}x{d.height}", "steps": steps, "batch": args.batch,
            "plain_img_s": args.batch / a.median, "facegen_img_s": args.batch / b.median,
            "ratio": a.median / b.median, "max_pixel_diff": diff, "peak_gib": peak_bytes(dev) / 2**30}


def main(argv: list[str] | None = None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--small", action="store_true", help="the tiny twins (random weights) instead of the real presets")
    p.add_argument("--family", choices=["sdxl", "flux", "both"], default="both")
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=None, help="default: the preset's (tiny: 4; real: 4 SDXL, 20 FLUX)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--offload", action="store_true", help="also measure model CPU offload (CUDA)")
    p.add_argument("--quantize", choices=["8bit"], default=None, help="also measure 8-bit weights (FLUX)")
    p.add_argument("--accept-license", action="store_true")
    add_output_args(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    families = ["sdxl", "flux"] if args.family == "both" else [args.family]
    print(f"# bench_pulid: {', '.join(families)}{' (tiny twins)' if args.small else ''}, {versions()}, "
          f"torch {torch.__version__}")
    rows = []
    for fam in families:
        preset = f"tiny-pulid-{fam}" if args.small else f"pulid-{fam}"
        configs = [("plain load", None, False)]
        if args.quantize and fam == "flux":
            configs.append((f"{args.quantize} weights", args.quantize, False))
        if args.offload:
            configs.append(("cpu offload", None, True))
            if args.quantize and fam == "flux":
                configs.append((f"{args.quantize} + offload", args.quantize, True))
        for label, q, off in configs:
            rows.append(run_one(label, preset, args, q, off))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    print(f"{'preset':>16} {'config':>15} {'size':>9} {'steps':>5} {'batch':>5} {'plain img/s':>11} "
          f"{'facegen img/s':>13} {'ratio':>6} {'max diff':>8} {'peak GiB':>8}")
    for r in rows:
        print(f"{r['preset']:>16} {r['label']:>15} {r['size']:>9} {r['steps']:>5} {r['batch']:>5} "
              f"{r['plain_img_s']:11.3f} {r['facegen_img_s']:13.3f} {r['ratio']:6.2f} {r['max_pixel_diff']:8d} "
              f"{r['peak_gib']:8.2f}")
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
