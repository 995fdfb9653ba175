"""Packaging contracts: importing facegen needs no optional extra and loads no model."""

import subprocess
import sys

from conftest import REPO

BLOCK_OPTIONAL = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'gradio', 'ray', 'insightface', 'gradio_client'}:
            raise ImportError('blocked optional package ' + name)
sys.meta_path.insert(0, Block())
"""


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
