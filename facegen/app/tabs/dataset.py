"""Dataset tab: a small preview run of the synthetic face-dataset generator.

Builds a :class:`facegen.dataset.spec.DatasetSpec` (WebDataset shards), runs it with the
local engine of :mod:`facegen.dataset.runner` (as ``facegen dataset`` does), then shows
an identities × images grid read back from the shards and offers the shards and the
manifest for download. Sizes are capped: bigger runs belong to the CLI.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from facegen.app.context import AppContext
from facegen.app.errors import user_errors
from facegen.app.presets import PresetInfo, preset_infos
from facegen.app.values import int_value
from facegen.app.widgets import CheckedNumber, CheckedSlider, model_picker, preset_of
from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

TITLE = "Dataset"
JOB = "dataset"
MAX_IDS, MAX_PER_ID = 8, 4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def generate_fn(ctx: AppContext, preset: str) -> Callable[..., Any]:
    """The dataset generator of ``preset``, built once per app (its pipeline loads on first use)."""
    from facegen.dataset.generator import make_generate_fn

    return ctx.pipelines.get(JOB, preset, lambda: make_generate_fn(
        preset, access=ctx.access))


def read_preview(out: Path, dest: Path) -> list[tuple[str, str]]:
    """(image path, caption) for every sample of the run, identity-major, extracted as-is
    (bytes unchanged) from the WebDataset shards (or found in an ImageFolder)."""
    items: list[tuple[str, str, str]] = []
    for shard in sorted(out.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            for name, member in sorted(members.items()):
                key, _, suffix = name.rpartition(".")
                if f".{suffix.lower()}" not in IMAGE_SUFFIXES or "." in Path(key).name:
                    continue                           # not a sample image (e.g. <key>.crop112.png)
                meta: dict[str, Any] = {}
                if f"{key}.json" in members:
                    with tar.extractfile(members[f"{key}.json"]) as fh:  # type: ignore[union-attr]
                        meta = json.load(io.TextIOWrapper(fh, encoding="utf-8"))
                target = dest / (key.replace("/", "_") + Path(name).suffix)
                with tar.extractfile(member) as src:  # type: ignore[union-attr]
                    target.write_bytes(src.read())     # no member path is trusted as a path
                items.append((_sort_key(meta, key), str(target), _caption(meta, key)))
    if not items:
        for path in sorted(p for p in out.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            items.append((str(path.relative_to(out)), str(path), path.parent.name + "/" + path.name))
    return [(path, caption) for _, path, caption in sorted(items)]


def _sort_key(meta: dict[str, Any], key: str) -> str:
    ident, index = meta.get("identity"), meta.get("index")
    if isinstance(ident, int) and isinstance(index, int):
        return f"{ident:08d}/{index:06d}"
    return key


def _caption(meta: dict[str, Any], key: str) -> str:
    parts = [f"id {meta['identity']}" if "identity" in meta else key]
    for field in ("index", "seed"):
        if field in meta:
            parts.append(f"{field} {meta[field]}")
    return " · ".join(parts)


def downloads(out: Path) -> list[str]:
    """The shards and the manifest (the files a user takes away)."""
    keep = [p for p in sorted(out.rglob("*")) if p.is_file() and (
        p.suffix in (".tar", ".jsonl", ".parquet", ".yaml", ".json") and not p.name.startswith("."))]
    return [str(p) for p in keep if p.parent == out or p.suffix == ".tar"]


def run_preview(ctx: AppContext, infos: list[PresetInfo], preset: Any, num_ids: Any, per_id: Any, seed: Any,
                progress: Any = None) -> tuple[Any, ...]:
    """One preview run: a fresh dataset folder in the app's temp folder, generated with
    the local engine, then the grid (identity-major) and the files to download."""
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    name = preset_of(preset, infos)
    n_ids = int_value("identities", num_ids, default=0)
    k = int_value("images per identity", per_id, default=0)
    if not (1 <= n_ids <= MAX_IDS and 1 <= k <= MAX_PER_ID):
        raise InvalidArgumentError(f"a preview run has 1-{MAX_IDS} identities and 1-{MAX_PER_ID} images "
                                   f"each, got {n_ids} x {k}; use `facegen dataset` for more")
    seed_v = int_value("seed", seed, hi=2**32 - 1)
    run_seed = seed_v if seed_v is not None and seed_v >= 0 else 0
    work = ctx.new_output_dir(JOB)
    out = work / "dataset"
    spec = DatasetSpec(out=str(out), model=name, num_ids=n_ids, images_per_id=k, seed=run_seed,
                       format="webdataset", engine="local", workers=1, models_dir=ctx.access.models_dir,
                       accept_license=ctx.access.accept_license).validate()
    if progress is not None:
        progress(0, desc="sampling identities")
    gen = generate_fn(ctx, name)
    with ctx.gpu_lock:
        summary = run_dataset(spec, gen, progress=True)   # its tqdm bar drives the page's bar
    preview_dir = work / "preview"
    preview_dir.mkdir()
    grid = read_preview(out, preview_dir)
    text = f"{len(grid)} image(s): {n_ids} identities × {k} images, seed {run_seed}, preset `{name}`."
    return grid, downloads(out), text, summary.to_dict()


def build(ctx: AppContext) -> None:
    infos = preset_infos(ctx.access)
    with gr.Row():
        with gr.Column():
            gr.Markdown("A small preview of a synthetic face dataset: new identities (not real people), "
                        "several images each, written as WebDataset shards. Use `facegen dataset` for real runs.")
            picker = model_picker(ctx, infos, "dataset-model")
            num_ids = CheckedSlider(1, MAX_IDS, value=4, step=1, label="Identities")
            per_id = CheckedSlider(1, MAX_PER_ID, value=3, step=1, label="Images per identity")
            seed = CheckedNumber(value=0, precision=0, label="Run seed")
            run = gr.Button("Run preview", variant="primary", elem_id="dataset-run")
        with gr.Column():
            grid = gr.Gallery(label="Identities × images (one row per identity)", type="filepath",
                              interactive=False, columns=3, fit_columns=False, height=420, elem_id="dataset-grid")
            info = gr.Markdown(elem_id="dataset-info")
            files = gr.File(label="Download: shards and manifest", file_count="multiple", interactive=False)
            with gr.Accordion("Run summary (JSON)", open=False):
                summary = gr.JSON()

    @user_errors
    def _run(preset_v: Any, ids_v: Any, k_v: Any, seed_v: Any,
             progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:  # noqa: B008
        return run_preview(ctx, infos, preset_v, ids_v, k_v, seed_v, progress)

    per_id.change(lambda k: gr.update(columns=int(k)), inputs=per_id, outputs=grid, queue=False,
                  api_visibility="private")
    run.click(_run, inputs=[picker.dropdown, num_ids, per_id, seed], outputs=[grid, files, info, summary],
              api_name="dataset", concurrency_limit=1, concurrency_id="gpu")
