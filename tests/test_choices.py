"""One vocabulary (facegen/choices.py): the CLI, the app and the API read the same choices, and no
module writes a vocabulary of its own."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import numpy as np
import pytest

import facegen.choices as C
from facegen.cli import build_parser
from facegen.errors import InvalidArgumentError

PACKAGE = Path(__file__).resolve().parents[1] / "facegen"
VOCABULARIES = {name: v for name, v in vars(C).items() if isinstance(v, C.Choice)}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _option(command: str, flag: str) -> argparse.Action:
    return next(a for a in _subcommands()[command]._actions if flag in a.option_strings)


def _word_sets(path: Path) -> list[tuple[int, frozenset[str]]]:
    """Tuples, lists and sets of string literals (two or more) written in a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            out.append((node.lineno, frozenset(e.value for e in node.elts)))
        if isinstance(node, ast.Dict) and len(node.keys) > 1 and all(
                isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
            out.append((node.lineno, frozenset(k.value for k in node.keys)))
    return out


def test_no_module_writes_a_vocabulary_of_its_own():
    vocab = {frozenset(v.values): name for name, v in VOCABULARIES.items()}
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line} writes {vocab[words]}'s words again"
                 for p in sorted(PACKAGE.rglob("*.py")) if p.name != "choices.py"
                 for line, words in _word_sets(p) if words in vocab]
    assert not offenders, "read them from facegen.choices: " + "; ".join(offenders)


def test_the_vocabulary_scan_finds_a_copy(tmp_path):
    copy = tmp_path / "mod.py"
    copy.write_text('GENDERS = ("person", "woman", "man")\nWORDS = {"person": 1, "woman": 2, "man": 3}\n')
    assert [words for _, words in _word_sets(copy)] == [frozenset(C.GENDER.values)] * 2


def test_the_cli_reads_the_choices():
    assert tuple(_option("age", "--gender").choices) == C.GENDER.values
    assert _option("age", "--gender").default == C.GENDER.default
    assert _option("swap", "--strength").default == C.SWAP_STRENGTH.default
    assert tuple(_option("swap", "--engine").choices) == C.SWAP_ENGINE.values
    assert tuple(_option("generate", "--face-layout").choices) == C.FACE_LAYOUT.values
    assert tuple(_option("generate", "--dtype").choices) == C.DTYPE.values
    assert _option("swap", "--target-face").default == C.FACE.default
    age = _option("age", "--age").type
    assert age(str(int(C.AGE.hi))) == C.AGE.hi
    with pytest.raises(argparse.ArgumentTypeError):
        age(str(int(C.AGE.hi) + 1))
    seed = _option("generate", "--seed").type
    assert seed(str(C.SEED.hi)) == C.SEED.hi


def test_the_api_refuses_what_the_cli_refuses():
    from facegen.pipelines.aging import age_prompt

    assert "woman" in age_prompt(70, "woman")
    with pytest.raises(InvalidArgumentError, match="gender must be one of person, woman, man"):
        age_prompt(70, "lady")
    with pytest.raises(InvalidArgumentError, match=r"target age must be in 0\.\.110, got 111"):
        C.AGE.check(111, "target age")
    assert C.AGE.check(np.int64(40)) == 40 and C.SWAP_STRENGTH.check(1) == 1.0
    for bad in (0, 1.01, float("nan"), "0.5", True):
        with pytest.raises(InvalidArgumentError, match="strength"):
            C.SWAP_STRENGTH.check(bad)
    assert C.SEED.check(2**63 - 1) == 2**63 - 1
    with pytest.raises(InvalidArgumentError):
        C.SEED.check(2**63)                                # exact, not a float rounding


def test_the_app_reads_the_choices():
    pytest.importorskip("gradio")
    from facegen.app.tabs import age, swap
    from facegen.app.values import MAX_SEED

    assert (age.MIN_AGE, age.MAX_AGE) == (C.AGE.lo, C.AGE.hi) and MAX_SEED == C.APP_SEED.hi
    assert "SWAP_STRENGTH" in vars(swap) and "GENDER" in vars(age)


def test_refusals_name_the_presets_the_capability_query_gives():
    from facegen.adapters.registry import people_refusal, presets_that, refusal

    takes_text = presets_that(lambda a: a.supports_prompt)
    assert takes_text and set(presets_that(lambda a: a.supports_prompt, tiny=True)) < set(takes_text)
    msg = refusal("x", "takes no text", lambda a: a.supports_prompt)
    assert msg == f"preset 'x' takes no text; presets that can: {', '.join(takes_text)}"
    assert people_refusal("x", 9, 1).endswith("presets that take 9 people: none")
