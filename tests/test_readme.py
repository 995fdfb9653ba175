"""The README's own commands, as a new user types them."""

from __future__ import annotations

import shlex

import pytest
from conftest import REPO


def readme_first_command() -> list[str]:
    """The facegen command of the README's first line (after ``bash scripts/setup.sh &&``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = text.split("```bash\n", 1)[1].splitlines()[0]
    setup, run = first.split(" && ", 1)
    assert setup == "bash scripts/setup.sh", first          # one set-up-and-run line
    return shlex.split(run.replace('"$(.venv/bin/python -m facegen.examples)"', "TOM"))


@pytest.mark.slow
def test_the_readmes_first_line_runs_twice(tmp_path, monkeypatch, tom_hanks_path, capfd):
    """Run it, then run it again in the same folder: both succeed (it was exit 2 the second time
    because out/ held the first run)."""
    from facegen.cli import main

    argv = readme_first_command()
    assert argv[0] == ".venv/bin/facegen"
    argv = [str(tom_hanks_path) if a == "TOM" else a for a in argv[1:]] + ["--steps", "1", "--no-progress"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for run in (1, 2):
        assert main(argv) == 0, (run, capfd.readouterr().err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0000.png", "0001.png", "metadata.jsonl"]
