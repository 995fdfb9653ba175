"""``facegen fr-train``: train an IResNet with a margin head on a face dataset.

One process, several GPUs or several machines through accelerate (``accelerate launch -m facegen
fr-train ...``; the global batch is split between the processes), mixed precision on GPU.

The run folder::

    RUN/config.json          the network's contract (facegen.id.iresnet: a run is an encoder), the
                             recipe, the dataset and what was skipped; written last
    RUN/model.safetensors    the backbone's weights
    RUN/train.jsonl          one line per logging step: step, epoch, loss, lr, images/s, elapsed
    RUN/loss.png             the loss curve
    RUN/checkpoint.pt        every --checkpoint-every steps (atomic; torch.load(weights_only=True)):
                             backbone, head, optimiser, schedule, step; removed at the end

After a kill the same command resumes from the checkpoint; on CPU with a fixed seed the final
weights equal those of an uninterrupted run (each batch and augmentation is a function of the
seed, epoch and position only: :mod:`facegen.fr.data`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError
from facegen.fr.data import TrainSet, make_batches, steps_per_epoch
from facegen.fr.recipes import Recipe

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train.jsonl"
LOSS_PLOT = "loss.png"


@dataclass
class TrainResult:
    run: Path
    steps: int
    final_loss: float
    images_per_s: float
    resumed_from: int


def lr_at(step: int, recipe: Recipe, steps_per_ep: int) -> float:
    """The schedule: linear warm-up, then ÷10 at each milestone epoch."""
    warm = int(recipe.warmup_epochs * steps_per_ep)
    if warm and step < warm:
        return recipe.lr * (step + 1) / warm
    drops = sum(step >= m * steps_per_ep for m in recipe.milestones)
    return recipe.lr * (0.1 ** drops)


def build(recipe: Recipe, num_classes: int, seed: int) -> tuple[Any, Any, Any]:
    """(backbone, head, optimiser), initialised from ``seed``."""
    import torch  # noqa: PLC0415

    from facegen.fr.heads import make_head  # noqa: PLC0415
    from facegen.id.iresnet import build_iresnet  # noqa: PLC0415

    torch.manual_seed(seed)
    model = build_iresnet(recipe.arch, recipe.image_size, recipe.embedding_size)
    head = make_head(recipe.head, num_classes, recipe.embedding_size, recipe.scale, recipe.margin, recipe.h)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return model, head, opt


def run_config(recipe: Recipe, ts: TrainSet | None, steps: int, seed: int) -> dict[str, Any]:
    from facegen import __version__  # noqa: PLC0415
    from facegen.id.iresnet import RUN_KIND  # noqa: PLC0415

    return {"kind": RUN_KIND, "arch": recipe.arch, "input_size": recipe.image_size,
            "embedding_size": recipe.embedding_size, "template": "arcface112", "crop_size": 112,
            "mean": 127.5, "std": 127.5, "color_order": "rgb", "detector": "dlib", "threshold": 0.3,
            "normalisation": "(x - 127.5) / 127.5 on the RGB ArcFace 112 crop, resized to input_size",
            "recipe": recipe.as_dict(), "seed": seed, "steps": steps,
            "dataset": ts.root if ts is not None and ts.format != "memory" else None,
            "dataset_fingerprint": ts.fingerprint if ts is not None else None,
            "identities": ts.num_classes if ts is not None else None,
            "images": len(ts) if ts is not None else None,
            "skipped_identities": ts.skipped_identities if ts is not None else 0,
            "notes": ts.notes if ts is not None else [], "facegen": __version__}


def write_run(run: Path, model: Any, config: dict[str, Any]) -> None:
    """``model.safetensors`` (backbone only), then ``config.json`` (written last: a run is complete
    when its config is there)."""
    from safetensors.torch import save  # noqa: PLC0415

    from facegen.id.iresnet import RUN_CONFIG, RUN_WEIGHTS  # noqa: PLC0415
    from facegen.io.atomic import atomic_write_bytes  # noqa: PLC0415

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run / RUN_WEIGHTS, save(state, metadata={"format": "pt", "arch": config["arch"]}))
    atomic_write_bytes(run / RUN_CONFIG, (json.dumps(config, indent=2) + "\n").encode("utf-8"))


def _save_checkpoint(path: Path, model: Any, head: Any, opt: Any, step: int) -> None:
    import torch  # noqa: PLC0415

    from facegen.io.atomic import atomic_write  # noqa: PLC0415

    state = {"model": model.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
             "step": torch.tensor(step)}
    atomic_write(path, lambda fh: torch.save(state, fh))


def _load_checkpoint(path: Path, model: Any, head: Any, opt: Any) -> int:
    import torch  # noqa: PLC0415

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        return int(state["step"])
    except (RuntimeError, KeyError, EOFError, ValueError) as exc:
        raise InvalidArgumentError(f"{path} is not a checkpoint of this run ({type(exc).__name__}); delete it to "
                                   "start over") from None


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint a resumed run restarts from (they will be redone)."""
    from facegen.io.atomic import atomic_write_bytes  # noqa: PLC0415

    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode("utf-8"))


def check_run_folder(run: Path) -> None:
    from facegen.id.iresnet import is_run  # noqa: PLC0415

    if run.exists() and not run.is_dir():
        raise InvalidArgumentError(f"{run} exists and is not a folder")
    if is_run(run):
        raise InvalidArgumentError(f"{run} already holds a finished run; choose another --out")


def train(ts: TrainSet, recipe: Recipe, run: str | Path, *, seed: int = 0, checkpoint_every: int = 200,
          log_every: int = 10, max_steps: int | None = None, workers: int = 0, device: str | None = None,
          progress: bool = False, plot: bool = True) -> TrainResult:
    """Train on ``ts`` by ``recipe`` into the run folder ``run`` (resuming from its checkpoint)."""
    import torch  # noqa: PLC0415

    try:
        from accelerate import Accelerator  # noqa: PLC0415
    except ImportError:
        from facegen.errors import MissingDependencyError  # noqa: PLC0415
        raise MissingDependencyError("accelerate") from None
    run = Path(run)
    check_run_folder(run)
    spe = steps_per_epoch(ts, recipe.batch_size)
    total = spe * recipe.epochs if max_steps is None else min(max_steps, spe * recipe.epochs)
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    acc = Accelerator(cpu=cpu, mixed_precision="no" if cpu else recipe.mixed_precision)
    if recipe.batch_size % acc.num_processes:
        raise InvalidArgumentError(f"batch size {recipe.batch_size} does not split between {acc.num_processes} "
                                   "processes")
    model, head, opt = build(recipe, ts.num_classes, seed)
    ckpt = run / CHECKPOINT
    step = _load_checkpoint(ckpt, model, head, opt) if ckpt.is_file() else 0
    if step and acc.is_main_process:
        logger.info("resuming %s from step %d", run, step)
        _trim_log(run / TRAIN_LOG, step)
    elif acc.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        (run / TRAIN_LOG).unlink(missing_ok=True)
    resumed_from = step
    model, head, opt = acc.prepare(model, head, opt)
    model.train()
    head.train()
    bar = None
    if progress and acc.is_main_process:
        from tqdm import tqdm  # noqa: PLC0415
        bar = tqdm(total=total, initial=step, desc="fr-train", unit="step")
    log = (run / TRAIN_LOG).open("a", encoding="utf-8") if acc.is_main_process else None
    t0, seen, window_t, window_n, loss_val, unreadable = time.perf_counter(), 0, time.perf_counter(), 0, math.nan, 0
    try:
        while step < total:
            epoch, first = divmod(step, spe)
            batches = make_batches(ts, batch_size=recipe.batch_size, image_size=recipe.image_size,
                                   augment_names=recipe.augment, augment_p=recipe.augment_p, seed=seed, epoch=epoch,
                                   start_batch=first, rank=acc.process_index, world=acc.num_processes,
                                   extra=recipe.extra)
            loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers,
                                                 persistent_workers=False)
            done_before = step
            for x, y, bad in loader:
                lr = lr_at(step, recipe, spe)
                for g in opt.param_groups:
                    g["lr"] = lr
                x, y = x.to(acc.device, non_blocking=True), y.to(acc.device, non_blocking=True)
                with acc.autocast():
                    emb = model(x)
                loss = head(emb.float(), y)
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                acc.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                step += 1
                unreadable += int(bad)
                window_n += int(x.shape[0]) * acc.num_processes
                if step % log_every == 0 or step == total:
                    loss_val = float(acc.reduce(loss.detach(), reduction="mean"))
                    now = time.perf_counter()
                    ips = window_n / max(now - window_t, 1e-9)
                    seen += window_n
                    window_t, window_n = now, 0
                    if log is not None:
                        log.write(json.dumps({"step": step, "epoch": step / spe, "loss": round(loss_val, 6),
                                              "lr": lr, "images_per_s": round(ips, 2),
                                              "elapsed_s": round(now - t0, 3)}) + "\n")
                        log.flush()
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss_val:.3f}", img_s=f"{ips:.0f}")
                if bar is not None:
                    bar.update(1)
                if step % checkpoint_every == 0 and step < total:
                    acc.wait_for_everyone()
                    if acc.is_main_process:
                        _save_checkpoint(ckpt, acc.unwrap_model(model), acc.unwrap_model(head), opt, step)
                if step >= total:
                    break
            if step == done_before:
                raise InvalidArgumentError(f"{ts.root}: no readable image in epoch {epoch}; check the dataset's files")
    finally:
        if log is not None:
            log.close()
        if bar is not None:
            bar.close()
    acc.wait_for_everyone()
    ips = seen / max(time.perf_counter() - t0, 1e-9)
    if acc.is_main_process:
        cfg = run_config(recipe, ts, step, seed)
        cfg["unreadable_images"] = unreadable
        cfg["processes"] = acc.num_processes
        backbone = acc.unwrap_model(model)
        write_run(run, backbone, cfg)
        if plot:
            try:
                plot_loss(run / TRAIN_LOG, run / LOSS_PLOT)
            except Exception as exc:  # noqa: BLE001 - no matplotlib or an empty log: the run stands
                logger.warning("no loss plot: %s", exc)
        ckpt.unlink(missing_ok=True)
    return TrainResult(run, step, loss_val, ips, resumed_from)


def plot_loss(log: Path, out: Path) -> None:
    from facegen.dataset.report_plots import pyplot  # noqa: PLC0415
    from facegen.io.atomic import atomic_write  # noqa: PLC0415

    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("fr-train loss")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_write(out, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)


def mean_loss(log: Path) -> float:
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return float(np.mean([r["loss"] for r in rows])) if rows else math.nan
