"""The CLI's shape: every shared option declared once (facegen/cli/options.py), the same on
every command that takes it; commands registered by plain imports; the console script."""

from __future__ import annotations

import argparse
import ast
import importlib

import pytest

from conftest import REPO
from facegen.cli import COMMAND_MODULES, build_parser

CLI = REPO / "facegen" / "cli"


def _declared() -> dict[str, list[str]]:
    """Every ``--flag`` an ``add_argument`` call declares, with where (``module.py:line``)."""
    out: dict[str, list[str]] = {}
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument" and node.args and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).startswith("--")):
                out.setdefault(node.args[0].value, []).append(f"{path.name}:{node.lineno}")
    return out


#: the shared options: every flag options.py declares (read from the code, not listed by hand)
SHARED = tuple(sorted(f for f, where in _declared().items() if any(w.startswith("options.py:") for w in where)))
#: shared flags a command declares itself, and why: dataset's ``--model`` is a spec field, serve's
#: the page's first choice, fr-eval's a trained run folder (each leaves an unknown name to its own one-line error);
#: fr-train's ``--workers`` counts data-loading workers, 0 meaning the training process itself
OWN_DECLARATION = {"--model": {"dataset.py", "serve.py", "fr.py"}, "--workers": {"fr.py"}}
#: one spelling, different meanings in different commands (so not one shared declaration)
DISTINCT_MEANINGS = {
    "--batch-size": "images per generator call (dataset), images denoised together (generate), per encoder "
                    "batch (dataset-report)",
    "--engine": "the dataset's engine (local, accelerate, ray) vs the swap engine (diffusion, inswapper)",
    "--reference": "a clean photo of the person (edits) vs the reference dataset (dataset-report)",
    "--debug": "the global flag (tracebacks) and serve's Gradio debug mode",
}
#: the commands that read weights, and so take --models-dir and --accept-license
READS_WEIGHTS = {"embed", "verify", "doctor", "generate", "swap", "age", "restore", "dataset", "dataset-stats",
                 "dataset-report", "serve", "fr-eval"}
#: the commands that read no licensed weights (fr-train aligns with dlib's bundled models, if at all)
NO_WEIGHTS = {"inspect", "fr-train"}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def test_shared_options_are_declared_only_in_options_py():
    """A flag options.py declares is declared nowhere else, and a flag two command modules both
    declare is shared (moved to options.py) unless its meanings differ (DISTINCT_MEANINGS)."""
    assert {"--models-dir", "--seed", "--out", "--json", "--prompt", "--adapter-scale", "--workers"} <= set(SHARED)
    offenders = []
    for flag, where in _declared().items():
        modules = {w.split(":")[0] for w in where} - {"options.py"}
        if flag in SHARED:
            offenders += [f"{w} {flag}" for w in where
                          if w.split(":")[0] != "options.py" and w.split(":")[0] not in OWN_DECLARATION.get(flag, ())]
        elif len(modules) > 1 and flag not in DISTINCT_MEANINGS:
            offenders.append(f"{flag} declared in {', '.join(where)}")
    assert not offenders, "declare shared options in facegen/cli/options.py and reuse them: " + "; ".join(offenders)
    assert set(DISTINCT_MEANINGS) <= set(_declared()), "a DISTINCT_MEANINGS entry no command declares any more"


def test_every_command_that_reads_weights_takes_the_models_options_the_same_way():
    commands = _subcommands()
    assert READS_WEIGHTS | NO_WEIGHTS == set(commands)
    seen: dict[str, set] = {"--models-dir": set(), "--device": set()}
    for name, p in commands.items():
        opts = _options(p)
        if name in READS_WEIGHTS:
            assert "--models-dir" in opts and "--accept-license" in opts, name
            assert opts["--accept-license"].default is False, name
            assert opts["--accept-license"].help.startswith("accept the non-commercial licences of"), name
        else:
            assert "--models-dir" not in opts, name
        for flag in seen:
            if flag in opts:
                seen[flag].add((opts[flag].help, opts[flag].default))
    assert all(len(v) == 1 for v in seen.values()), seen     # one declaration: one help, one default


def test_sampling_options_are_checked_as_they_are_parsed(capsys):
    commands = _subcommands()
    for name in ("generate", "swap", "age", "restore", "dataset"):
        opts = _options(commands[name])
        assert {"--seed", "--steps", "--guidance", "--device", "--no-progress"} <= set(opts), name
        for flag, bad in (("--seed", "-1"), ("--steps", "0"), ("--guidance", "nan")):
            with pytest.raises(argparse.ArgumentTypeError):
                opts[flag].type(bad)
    assert _options(commands["generate"])["--guidance"].type("50") == 50.0
    with pytest.raises(argparse.ArgumentTypeError):
        _options(commands["generate"])["--guidance"].type("51")
    assert _options(commands["dataset"])["--guidance"].type("70") == 70.0   # the spec's own limit (100) applies


def test_commands_are_plain_imports_and_the_console_script_resolves():
    source = (CLI / "__init__.py").read_text(encoding="utf-8")
    assert "importlib" not in source
    assert [m.__name__.rsplit(".", 1)[1] for m in COMMAND_MODULES] == \
        ["embed", "doctor", "generate", "edit", "dataset", "report", "fr", "serve", "inspect"]
    tomllib = pytest.importorskip("tomllib")
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["facegen"]
    module, attr = target.split(":")
    from facegen.cli import main
    assert getattr(importlib.import_module(module), attr) is main
