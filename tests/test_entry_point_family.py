"""A family from another package (issue 24 part 8): ``tests/plugins/facegen_toyfamily`` registers
through the ``facegen.families`` entry point and is generated with from the CLI, the app's handler
and the dataset job — no facegen file names it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

PLUGINS = REPO / "tests" / "plugins"
PRESET = "tiny-toyid"


def _site(root: Path) -> Path:
    """A folder that, on ``sys.path``, makes the toy package look installed: its dist-info
    declares the entry point, as ``pip install`` of a package with
    ``[project.entry-points."facegen.families"] toyid = "facegen_toyfamily"`` would."""
    info = root / "facegen_toyfamily-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: facegen-toyfamily\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[facegen.families]\ntoyid = facegen_toyfamily\n", encoding="utf-8")
    return root


@pytest.fixture
def toy_family(tmp_path, monkeypatch):
    """The toy family installed in this process; every registry is as it was afterwards."""
    import facegen.adapters.registry as AR
    import facegen.models.plugins as P
    import facegen.models.registry as R
    import facegen.models.tiny as T

    AR.discover_families()                                       # facegen's own families first
    saved = dict(AR.FAMILIES), dict(R.PRESETS), dict(T.BUILDERS), dict(T.SPECS)
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.syspath_prepend(str(_site(tmp_path / "site")))
    monkeypatch.setattr(P, "_plugins_loaded", False)
    yield
    for live, old in zip((AR.FAMILIES, R.PRESETS, T.BUILDERS, T.SPECS), saved):
        live.clear()
        live.update(old)
    sys.modules.pop("facegen_toyfamily", None)


def test_an_installed_family_is_registered_like_a_builtin_one(toy_family):
    from facegen.adapters.registry import adapter_class, presets_that
    from facegen.models.registry import get_preset, list_presets

    assert PRESET in list_presets()
    preset = get_preset(PRESET)
    assert adapter_class(preset.family).display_names == ("ToyID",)
    assert PRESET in presets_that(lambda a: a.supports_prompt, tiny=True)


def test_a_family_that_fails_to_load_is_a_one_line_error(tmp_path, monkeypatch):
    import facegen.models.plugins as P
    import facegen.models.registry as R
    from facegen.errors import FacegenError

    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[facegen.families]\nbroken = no_such_module_here\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(P, "_plugins_loaded", False)
    with pytest.raises(FacegenError, match=r"family 'broken' .*failed to load: ModuleNotFoundError") as exc:
        R.get_preset("not-a-preset")
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_the_installed_family_generates_from_the_cli_the_app_and_the_dataset_job(toy_family, tmp_path,
                                                                                  tom_hanks_path):
    # the CLI, in a process of its own that finds the family through the entry point only
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(PLUGINS), str(tmp_path / "site")]))
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "facegen", "generate", "--model", PRESET, "--id", str(tom_hanks_path),
                           "--out", str(out), "--seed", "3", "--steps", "2", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    written = sorted(out.glob("*.png"))
    assert written, proc.stdout

    # the app's Generate handler
    from facegen.app.context import AppContext
    from facegen.app.presets import preset_infos
    from facegen.app.tabs.generate import generate as generate_tab
    from facegen.io import load_image

    ctx = AppContext(model=PRESET, work_dir=tmp_path / "app")
    infos = preset_infos()
    assert PRESET in [i.name for i in infos]
    result = generate_tab(ctx, infos, [str(tom_hanks_path)], PRESET, "", "", 1, 3, 2, 3.0, 1.0, 0.8)
    app_png = next(Path(f) for f in result[1] if str(f).endswith(".png"))
    assert np.array_equal(load_image(app_png), load_image(written[0]))     # same seed: the CLI's pixels

    # the dataset job
    from facegen.dataset.generator import make_generate_fn
    from facegen.paths import ModelAccess
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec

    spec = DatasetSpec(out=str(tmp_path / "ds"), model=PRESET, num_ids=2, images_per_id=1, seed=3, shard_size=2,
                       format="imagefolder")
    run_dataset(spec, make_generate_fn(PRESET, ModelAccess(device="cpu"), steps=2), progress=False)
    images = sorted(p for p in (tmp_path / "ds").rglob("*.png") if "crops" not in p.parts)
    assert len(images) == 2 and not np.array_equal(load_image(images[0]), load_image(images[1]))
