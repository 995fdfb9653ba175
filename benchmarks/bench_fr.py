"""Face-recognition training and evaluation throughput (`facegen fr-train`, `facegen fr-eval`).

Training: facegen's loop (:func:`facegen.fr.train.train`: the deterministic data path from an
in-memory set of aligned crops, augmentation, accelerate, logging, checkpoint bookkeeping) against
a plain PyTorch loop over the same model, head, optimiser, batch size and in-memory data (tensors
made beforehand, untimed).  Both run in this process, alternately (plain, facegen, plain, facegen …
``--repeats``; the best of each is kept: the CPU is shared).  Target: facegen ≥ 0.9 × plain.

Evaluation: pairs/s of `fr-eval`'s path (decode → crop → embed image and mirror → protocol) on a
``.bin`` of aligned crops with a trained-run IResNet (``--eval-arch``, random weights: speed does
not depend on them), and on pairs drawn from ../shared/faces photos with the dlib encoder
(detection included).

    python benchmarks/bench_fr.py [--arch tiny] [--image-size 112] [--batch-size 32] [--steps 20]
                                  [--eval-pairs 300] [--eval-arch r18] [--threads 1]
    # on a GPU (IResNet-50, 112², batch 128, fp16):
    python benchmarks/bench_fr.py --arch r50 --image-size 112 --batch-size 128 --steps 50 --device cuda

Exit status 1 when the training ratio is below ``--target``.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import _common  # noqa: F401 - puts the checkout on sys.path

from facegen.fr.data import memory_train_set  # noqa: E402
from facegen.fr.recipes import get_recipe  # noqa: E402
from facegen.fr.train import build, lr_at, train  # noqa: E402


def crops(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 112, 112, 3), dtype=np.uint8),
            np.repeat(np.arange(classes), n // classes))


def plain_loop(recipe, images: np.ndarray, labels: np.ndarray, steps: int, device: str) -> float:
    """The reference: model, head and SGD over ready-made tensors; images/s."""
    import torch

    model, head, opt = build(recipe, int(labels.max()) + 1, 0)
    model.to(device).train()
    head.to(device).train()
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().sub(127.5).div(127.5)
    if recipe.image_size != 112:
        x_all = torch.nn.functional.interpolate(x_all, size=(recipe.image_size,) * 2, mode="bilinear")
    y_all = torch.from_numpy(labels).long()
    b = recipe.batch_size
    batches = [(x_all[i * b:(i + 1) * b].to(device), y_all[i * b:(i + 1) * b].to(device))
               for i in range(len(images) // b)]
    use_amp = device == "cuda" and recipe.mixed_precision in ("fp16", "bf16")
    dtype = torch.float16 if recipe.mixed_precision == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler(enabled=use_amp and dtype == torch.float16)
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = batches[step % len(batches)]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, recipe, len(batches))
        with torch.autocast(device_type=device, dtype=dtype, enabled=use_amp):
            emb = model(x)
        loss = head(emb.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * b / (time.perf_counter() - t0)


def facegen_loop(recipe, images: np.ndarray, labels: np.ndarray, steps: int, device: str, workers: int) -> float:
    ts = memory_train_set(images, labels)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(ts, recipe, Path(tmp) / "run", max_steps=steps, log_every=10, checkpoint_every=10**9,
              workers=workers, device=device, plot=False)
        return steps * recipe.batch_size / (time.perf_counter() - t0)


def eval_bin(arch: str, pairs: int) -> float:
    """pairs/s of fr-eval on a .bin of aligned crops with a trained-run IResNet."""
    from PIL import Image

    from facegen.fr.binfile import write_bin
    from facegen.fr.evaluate import evaluate, load_sets
    from facegen.fr.train import run_config, write_run

    rng = np.random.default_rng(1)
    imgs = []
    for _ in range(2 * pairs):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8)).save(buf, format="JPEG")
        imgs.append(buf.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        write_bin(Path(tmp) / "set.bin", imgs, [bool(k % 2) for k in range(pairs)])
        recipe = get_recipe("vec2face", arch=arch)
        model, _, _ = build(recipe, 10, 0)
        write_run(Path(tmp) / "run", model.eval(), run_config(recipe, None, 0, 0))
        sets = load_sets([str(Path(tmp) / "set.bin")])
        t0 = time.perf_counter()
        evaluate(str(Path(tmp) / "run"), sets)
        return pairs / (time.perf_counter() - t0)


def eval_dlib(faces: Path, pairs_per_fold: int) -> tuple[float, int]:
    """pairs/s of fr-eval with the dlib encoder (detection included) on pairs drawn from photos."""
    from PIL import Image

    from facegen.fr.evaluate import evaluate, load_sets

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for photo in sorted(faces.iterdir()):
            if photo.suffix.lower() not in (".jpg", ".png") or photo.stem.startswith("group"):
                continue
            person = "_".join(p for p in photo.stem.split("_") if not p.isdigit() and p != "small")
            d = Path(tmp) / person
            d.mkdir(exist_ok=True)
            im = Image.open(photo).convert("RGB")
            for k in range(4):
                s = rng.uniform(0.7, 1.0)
                im.resize((int(im.width * s), int(im.height * s))).save(d / f"{photo.stem}_{k}.jpg")
        sets = load_sets(pairs_from=tmp, pairs_per_fold=pairs_per_fold)
        t0 = time.perf_counter()
        evaluate("dlib-resnet-v1", sets)
        return len(sets[0]) / (time.perf_counter() - t0), len(sets[0])


def main() -> int:
    p = _common.make_parser(__doc__)
    p.add_argument("--arch", default="tiny")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="data-loading workers of facegen's loop")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--eval-pairs", type=int, default=300)
    p.add_argument("--eval-arch", default="r18")
    p.add_argument("--faces", default=str(_common.REPO.parent / "shared" / "faces"))
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--target", type=float, default=0.9)
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = replace(get_recipe("vec2face", arch=args.arch, image_size=args.image_size, batch_size=args.batch_size),
                     augment=("flip",), milestones=())
    images, labels = crops(args.batch_size * 4, 8)
    plain, ours = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(recipe, images, labels, args.steps, args.device))
        ours.append(facegen_loop(recipe, images, labels, args.steps, args.device, args.workers))
    ratio = max(ours) / max(plain)
    result = {"arch": args.arch, "image_size": args.image_size, "batch": args.batch_size, "steps": args.steps,
              "device": args.device, "threads": torch.get_num_threads(), "plain_img_s": plain,
              "facegen_img_s": ours, "ratio": ratio}
    print(f"training {args.arch} {args.image_size}² batch {args.batch_size}, {args.steps} steps on {args.device}: "
          f"plain {max(plain):.1f} img/s, facegen {max(ours):.1f} img/s, ratio ×{ratio:.3f} (target ≥ {args.target})")
    if not args.skip_eval:
        result["eval_bin_pairs_s"] = eval_bin(args.eval_arch, args.eval_pairs)
        print(f"fr-eval, {args.eval_pairs}-pair .bin, IResNet {args.eval_arch} (CPU): "
              f"{result['eval_bin_pairs_s']:.2f} pairs/s")
        faces = Path(args.faces)
        if faces.is_dir():
            rate, n = eval_dlib(faces, 600)
            result["eval_dlib_pairs_s"] = rate
            result["eval_dlib_pairs"] = n
            print(f"fr-eval, {n} pairs drawn from {faces} photos, dlib-resnet-v1 (detection included): {rate:.2f} pairs/s")
    print(json.dumps(result))
    return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
