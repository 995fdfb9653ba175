"""Time PuLID's EVA path (face parsing → grey face on white → EVA02-CLIP-L-14-336 with hidden states) per face.

The real networks at their real sizes (EVA02-CLIP-L visual tower 304 M parameters, facexlib BiSeNet
13.3 M) with random weights in the released layouts (no real weights offline; the time does not
depend on the values), through facegen's encoder code (:class:`facegen.id.pulid.PulidEncoder`'s
``features_image`` / ``eva_input`` / EVA tower).  Reference run in the same process: the same work
one face at a time, so the printed ratio is what batching several faces buys.  The recogniser half
(glintr100 ONNX) is the existing ``antelopev2-glintr100`` encoder's time, not repeated here.

    python benchmarks/bench_pulid_encoder.py [--faces 4] [--repeats 1] [--device cuda --dtype bf16]
"""

from __future__ import annotations

import sys

import numpy as np

from _common import make_parser, median_time, setup_logging, versions  # also puts the checkout on sys.path


def main(argv: list[str] | None = None) -> int:
    import torch

    from facegen.id.bisenet import parser_class
    from facegen.id.eva import tower_class
    from facegen.id.pulid import PulidEncoder
    from facegen.id.registry import get_encoder_spec
    from facegen.models.eva_clip import EVA02_L14_336, FACEXLIB_BISENET

    p = make_parser(__doc__)
    p.add_argument("--faces", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    args = p.parse_args(argv)
    setup_logging()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    eva = tower_class()(EVA02_L14_336).eval().to(args.device, dtype)
    parser = parser_class()(FACEXLIB_BISENET).eval()    # parsing on the CPU (a 512² image), EVA on --device
    enc = PulidEncoder.__new__(PulidEncoder)            # the encoder's own stages, without 1.2 GB of weight files
    enc.spec, enc.eva, enc.parser = get_encoder_spec("pulid-antelopev2-eva02"), eva, parser
    crops = [np.random.default_rng(i).integers(0, 256, (512, 512, 3), dtype=np.uint8) for i in range(args.faces)]

    def run(batch: list[np.ndarray]) -> None:
        with torch.inference_mode():
            cls, hidden = eva(enc.eva_input(enc.features_image(batch)).to(args.device, dtype))
            assert cls.shape == (len(batch), 768) and len(hidden) == 5 and hidden[0].shape[1:] == (577, 1024)

    run(crops[:1])                                       # warm-up
    batched = median_time(lambda: run(crops), args.repeats, args.device) / args.faces
    single = median_time(lambda: [run([c]) for c in crops], args.repeats, args.device) / args.faces
    params = sum(p.numel() for p in eva.parameters()) / 1e6
    print(f"# {versions()} · device {args.device} · {args.dtype} · torch threads {torch.get_num_threads()}")
    print(f"EVA02-CLIP-L-14-336 {params:.1f} M params + BiSeNet; {args.faces} faces")
    print(f"{'path':<28} {'s/face':>8}")
    print(f"{'one face at a time (ref)':<28} {single:8.3f}")
    print(f"{'all faces in one call':<28} {batched:8.3f}   ratio {single / batched:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
