"""Time facegen's InfiniteYou (FLUX + InfuseNet) generation against diffusers' plain FLUX ControlNet call.

In one process, same components, same pixels count, steps, guidance and seeds:

  (a) reference: diffusers' stock ``FluxControlNetPipeline`` built from the loaded components
      (InfuseNet as its ControlNet), called as its docs call it: ``pipe(prompt, control_image=
      black, controlnet_conditioning_scale=1.0, ...)`` — the same transformer and ControlNet work
      per step, the text in place of the ID tokens;
  (b) facegen: ``IDGenerationPipeline`` (``__call__(samples=...)`` with one ID embedding per image: the
      Resampler, the ID tokens fed to InfuseNet by the pre-hook, uint8 conversion on the device).

Prints images/s and latency of each, the ratio (b)/(a) and peak memory (CUDA: peak allocated;
CPU: the process's peak RSS), for the plain load and, where asked, with model CPU offload
(``--offload``, CUDA) and 8-bit weights (``--quantize 8bit``, optimum-quanto through diffusers'
``QuantoConfig``).

    python benchmarks/bench_flux.py --small                  # tiny-infiniteyou on CPU, ~1 min
    python benchmarks/bench_flux.py --quantize 8bit --small  # + the 8-bit load
    python benchmarks/bench_flux.py --offload --quantize 8bit   # infiniteyou (real weights), GPU
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

logger = logging.getLogger("bench_flux")


def identities(n: int, dim: int, encoder: str) -> list[IDEmbedding]:
    rng = np.random.default_rng(0)
    return [IDEmbedding(rng.standard_normal(dim).astype(np.float32), encoder) for _ in range(n)]


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def reference_pipeline(gen: IDGenerationPipeline) -> Any:
    from diffusers import FluxControlNetPipeline

    p = gen.pipe
    return FluxControlNetPipeline(transformer=p.transformer, vae=p.vae, text_encoder=p.text_encoder,
                                  tokenizer=p.tokenizer, text_encoder_2=p.text_encoder_2, tokenizer_2=p.tokenizer_2,
                                  scheduler=p.scheduler, controlnet=p.controlnet)


def run_one(label: str, preset: str, args: Any, quantize: str | None, offload: bool) -> dict[str, Any]:
    from PIL import Image

    gen = IDGenerationPipeline.from_preset(preset, access=ModelAccess(accept_license=args.accept_license,
                                                                      device=args.device), quantize=quantize)
    dev = gen.device
    if offload:
        gen.enable_model_cpu_offload()
    ref = reference_pipeline(gen)
    d = gen.preset.defaults
    h, w = d.height, d.width
    steps = args.steps or d.steps
    ids = identities(args.batch, gen.preset.id_dim, gen.encoder)
    seeds = list(range(args.batch))
    black = Image.new("RGB", (w, h))
    prompt = d.prompt

    def ours() -> np.ndarray:
        return np.stack(gen(samples=[Sample.of(e) for e in ids], seeds=seeds, num_inference_steps=steps,
                            batch_size=args.batch, progress=False, measure_similarity=False, output_type="np").images)

    def plain() -> np.ndarray:
        out = ref(prompt=[prompt] * args.batch, control_image=black, controlnet_conditioning_scale=1.0,
                  num_inference_steps=steps, guidance_scale=d.guidance, height=h, width=w,
                  generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="np")
        return (out.images * 255).round().astype(np.uint8)

    ref.set_progress_bar_config(disable=True)
    ours(), plain()                                            # warm-up (allocator, kernels)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    a, b = RunStats(), RunStats()
    for _ in range(args.repeats):                              # interleaved: the same machine load for both
        timed(plain, dev, a)
        timed(ours, dev, b)
    row = {"label": label, "preset": preset, "device": str(dev), "dtype": str(gen.dtype).removeprefix("torch."),
           "size": f"{w}x{h}", "steps": steps, "batch": args.batch,
           "plain_img_s": args.batch / a.median, "facegen_img_s": args.batch / b.median,
           "plain_s": a.median, "facegen_s": b.median, "ratio": a.median / b.median,
           "peak_gib": peak_bytes(dev) / 2**30, "images_shape": list(b.images.shape)}
    return row


def main(argv: list[str] | None = None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--small", action="store_true", help="the tiny twin (random weights) instead of infiniteyou")
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=None, help="default: the preset's (tiny: 4, real: 30)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--offload", action="store_true", help="also measure model CPU offload (CUDA)")
    p.add_argument("--quantize", choices=["8bit"], default=None, help="also measure 8-bit weights")
    p.add_argument("--accept-license", action="store_true")
    add_output_args(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    preset = "tiny-infiniteyou" if args.small else "infiniteyou"
    configs = [("bf16/fp32 plain", None, False)]
    if args.quantize:
        configs.append((f"{args.quantize} weights", args.quantize, False))
    if args.offload:
        configs.append(("cpu offload", None, True))
        if args.quantize:
            configs.append((f"{args.quantize} + offload", args.quantize, True))
    print(f"# bench_flux: {preset}, {versions()}, torch {torch.__version__}")
    rows = []
    for label, q, off in configs:
        rows.append(run_one(label, preset, args, q, off))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()                           # the previous load's memory back
            torch.cuda.reset_peak_memory_stats()
    print(f"{'config':>18} {'size':>9} {'steps':>5} {'batch':>5} {'plain img/s':>11} {'facegen img/s':>13} "
          f"{'ratio':>6} {'peak GiB':>8}")
    for r in rows:
        print(f"{r['label']:>18} {r['size']:>9} {r['steps']:>5} {r['batch']:>5} {r['plain_img_s']:11.3f} "
              f"{r['facegen_img_s']:13.3f} {r['ratio']:6.2f} {r['peak_gib']:8.2f}")
    if args.json:
        write_json(args.json, {"preset": preset, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
