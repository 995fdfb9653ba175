"""Packaging contracts: importing facegen needs no optional extra and loads no model."""

import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions

from conftest import REPO


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def optional_distributions() -> set[str]:
    """The distributions of pyproject's extras, and those scripts/setup.sh installs --no-deps on
    the side (requirements/nodeps.in; read from the files, not listed by hand)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names = {re.match(r"[A-Za-z0-9_.\-]+", req).group(0) for reqs in extras.values() for req in reqs}
    names = {n for n in names if _canonical(n) != "facegen"}
    nodeps = (REPO / "requirements" / "nodeps.in").read_text(encoding="utf-8")   # installed --no-deps
    names |= set(re.findall(r'^([A-Za-z0-9_.\-]+)==', nodeps, flags=re.M))
    return {_canonical(n) for n in names}


def optional_modules() -> set[str]:
    """The top-level modules those distributions install here."""
    optional = optional_distributions()
    return {mod for mod, dists in packages_distributions().items() if any(_canonical(d) in optional for d in dists)}


def test_the_optional_lists_come_from_pyproject_and_setup():
    assert {"gradio", "ray", "matplotlib", "insightface", "av"} <= optional_distributions()
    assert {"gradio", "insightface"} <= optional_modules()            # both installed in the dev venv


BLOCK_OPTIONAL = """
import sys
BLOCKED = %r
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked optional package ' + name)
sys.meta_path.insert(0, Block())
""" % sorted(optional_modules())


def test_import_without_optional_extras():
    code = BLOCK_OPTIONAL + (
        "import facegen, facegen.io, facegen.faces, facegen.id, facegen.cli, facegen.metrics\n"
        "from facegen.cli import build_parser\n"
        "build_parser()\n"
        "assert 'dlib' not in sys.modules, 'no model library at import'\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_console_script_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "facegen", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0
    for cmd in ("embed", "verify", "doctor"):
        assert cmd in proc.stdout
