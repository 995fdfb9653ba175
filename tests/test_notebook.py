"""The quickstart notebook runs top to bottom with the tiny preset (executed with nbclient)."""

from __future__ import annotations

import pytest
from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, tom_hanks_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert 'PRESET = "tiny"' in nb.cells[1].source  # the shipped notebook runs without real weights
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the generated images are shown
    text = "".join(o.get("text", "") for o in outputs)
    assert "reproduced alone" in text and "True facegen" in text
    assert (tmp_path / "quickstart-out" / "0001.png").is_file()


def test_the_notebooks_output_folder_is_ignored_by_git():
    """`jupyter execute notebooks/quickstart.ipynb` (the README's command) writes quickstart-out/
    beside the notebook or in the folder it runs from: it must not show up as untracked."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("notebooks/quickstart-out/0000.png", "quickstart-out/0000.png"):
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
        assert proc.returncode == 0, f"{path} is not ignored"
    assert "jupyter execute notebooks/quickstart.ipynb" in (REPO / "README.md").read_text(encoding="utf-8")
