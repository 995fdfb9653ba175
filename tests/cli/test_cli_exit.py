"""The exit policy: a user mistake is one ``error:`` line and exit 2; an internal failure one
line and exit 1 (the traceback only with --debug); interrupted 130 — for ``facegen`` and
``python app.py`` alike."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from facegen.cli import doctor, main, serve
from facegen.errors import InvalidArgumentError


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.strip()]


def _raise(exc: BaseException):
    def command(args):
        raise exc
    return command


def test_a_user_mistake_is_one_line_and_exit_2(monkeypatch, capfd):
    monkeypatch.setattr(doctor, "cmd_doctor", _raise(InvalidArgumentError("--thing 3 is wrong:\nuse 2")))
    assert main(["doctor"]) == 2
    out, err = capfd.readouterr()
    assert _error_lines(err) == ["error: --thing 3 is wrong: use 2"] and out == ""


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_failure_is_exit_1(monkeypatch, capfd, debug):
    monkeypatch.setattr(doctor, "cmd_doctor", _raise(RuntimeError("boom\nsecond line")))
    assert main(["--debug", "doctor"] if debug else ["doctor"]) == 1
    err = capfd.readouterr().err
    assert _error_lines(err)[-1] == ("error: internal failure: RuntimeError: boom second line "
                                     "(rerun with --debug for the traceback)")
    assert ("Traceback" in err) is debug
    if not debug:
        assert len(_error_lines(err)) == 1


def test_interrupted_is_130(monkeypatch, capfd):
    monkeypatch.setattr(doctor, "cmd_doctor", _raise(KeyboardInterrupt()))
    assert main(["doctor"]) == 130
    assert _error_lines(capfd.readouterr().err) == ["error: interrupted"]


def test_app_py_has_the_same_policy(monkeypatch, capfd):
    monkeypatch.setattr(serve, "run_serve", _raise(RuntimeError("boom")))
    assert serve.main(["--model", "tiny"]) == 1
    monkeypatch.setattr(serve, "run_serve", _raise(InvalidArgumentError("bad --port")))
    assert serve.main(["--model", "tiny"]) == 2
    assert _error_lines(capfd.readouterr().err)[-1] == "error: bad --port"


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "tiny", "--out", "x"],                               # neither --id nor --id-embeds
    ["generate", "--model", "tiny", "--id", "a.jpg", "--id-embeds", "a.npy", "--out", "x"],      # both
    ["swap", "--model", "tiny", "--source", "a", "--target", "b", "--out", "c", "--seed", "-3"],
    ["no-such-command"],
])
def test_argparse_mistakes_are_one_line_exit_2(capfd, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = _error_lines(capfd.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "(see 'facegen" in lines[0], lines


def test_python_dash_m_facegen_keeps_the_policy():
    proc = subprocess.run([sys.executable, "-m", "facegen", "generate", "--model", "tiny", "--out", "x"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _error_lines(proc.stderr) == [
        "error: one of the arguments --id --id-embeds --people is required (see 'facegen generate --help')"]


def test_both_swap_engines_state_one_rule(capfd, tmp_path, tom_hanks_path):
    """'swap' without --model and 'swap --engine inswapper' without its weights say the same rule."""
    from facegen.models.auxiliary import SWAP_ENGINE_RULE

    base = ["swap", "--source", str(tom_hanks_path), "--target", str(tom_hanks_path),
            "--out", str(tmp_path / "o.png"), "--consent"]
    assert main(base) == 2
    no_model = capfd.readouterr().err
    assert main(base + ["--engine", "inswapper", "--models-dir", str(tmp_path), "--accept-license"]) == 2
    no_weights = capfd.readouterr().err
    for err in (no_model, no_weights):
        assert SWAP_ENGINE_RULE in err and "without --model" not in err and len(_error_lines(err)) == 1, err


def test_an_interrupted_dataset_run_says_rerunning_resumes(monkeypatch, capfd, tmp_path):
    from facegen.cli import dataset

    monkeypatch.setattr(dataset, "run_dataset_cmd", _raise(KeyboardInterrupt()))
    assert main(["dataset", "--model", "tiny", "--num-ids", "2", "--out", str(tmp_path / "ds")]) == 130
    (line,) = _error_lines(capfd.readouterr().err)
    assert line.startswith("error: interrupted") and "rerun the same command to resume" in line


def test_a_missing_package_names_the_interpreter_and_the_set_up_venv(tmp_path, monkeypatch):
    """'python app.py' outside the venv: the package may well be installed, in ./.venv; say which
    Python could not import it and which one to run (it only said pip install)."""
    from facegen.errors import MissingDependencyError

    monkeypatch.chdir(tmp_path)
    msg = str(MissingDependencyError("gradio", "app", "the web demo"))
    assert sys.executable in msg and "pip install 'facegen[app]'" in msg and "run .venv" not in msg
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    msg = str(MissingDependencyError("gradio", "app", "the web demo"))
    assert "run .venv/bin/python" in msg and "\n" not in msg
