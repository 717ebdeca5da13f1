"""``tasktrace-admin run-program``/``run-python``: the hand-rolled option parser and the
launcher's helpers, run in-process (plus one subprocess that lists the launcher's imports)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from tasktrace.admin import _DESCRIPTIONS, main, run
from tasktrace.admin.run import RunOptions, parse_arguments


def _argparse_parse(command: str, argv: List[str]) -> argparse.Namespace:
    """What the argparse parser of ``add_arguments`` makes of ``argv``."""
    parser = argparse.ArgumentParser(prog=f"tasktrace-admin {command}")
    run.add_arguments(parser, python=command == "run-python")
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "job.py"],
        ["--config", "c.toml", "python", "job.py", "-v"],
        ["--config=c.toml", "--app-name", "billing", "--environment=prod", "python"],
        ["--app", "billing", "--env", "prod", "--conf=x", "prog"],
        ["python", "job.py", "--config", "x", "--", "-h"],
        ["--app-name", "a", "--app-name", "b", "prog"],
        [],
    ],
)
def test_parse_arguments_agrees_with_argparse(argv: List[str]) -> None:
    """The hand-rolled parser reads options and the program as argparse did."""
    ours = parse_arguments("run-program", argv)
    theirs = _argparse_parse("run-program", argv)
    assert ours.config == theirs.config
    assert ours.app_name == theirs.app_name
    assert ours.environment == theirs.environment
    assert ours.program == theirs.program
    assert ours.args is ours.program


def test_double_dash_ends_the_options() -> None:
    """Everything after -- is the program and its arguments, verbatim."""
    options = parse_arguments("run-program", ["--app-name", "a", "--", "--config", "x", "-h"])
    assert options.app_name == "a" and options.config is None
    assert options.program == ["--config", "x", "-h"]


def test_program_arguments_are_verbatim() -> None:
    """Options after the program are the program's, even when they look like ours."""
    options = parse_arguments("run-program", ["python", "--config", "x", "--help"])
    assert options.config is None
    assert options.program == ["python", "--config", "x", "--help"]


@pytest.mark.parametrize("flag", ["-h", "--help", "--he"])
def test_help_matches_the_full_parser(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """-h/--help print argparse's help, as ``tasktrace-admin help run-program`` does."""
    with pytest.raises(SystemExit) as exc:
        main(["run-program", flag, "python"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tasktrace-admin run-program")
    for option in ("--config FILE", "--app-name NAME", "--environment ENV"):
        assert option in out
    assert _DESCRIPTIONS["run-program"] in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config"], "argument --config FILE: expected one argument"),
        (["--app-name", "--config", "x", "prog"], "argument --app-name NAME: expected one"),
        (["-v", "prog"], "unrecognized arguments: -v"),
        (["--nope", "prog"], "unrecognized arguments: --nope"),
    ],
)
def test_usage_errors_exit_2(
    argv: List[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option or a missing value prints usage and the error, and exits with 2."""
    with pytest.raises(SystemExit) as exc:
        parse_arguments("run-program", argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tasktrace-admin run-program")
    assert message in err
    with pytest.raises(SystemExit):  # and argparse agrees that it is an error
        _argparse_parse("run-program", argv)


def test_no_program_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """run-program with options but no program prints usage and returns 2."""
    assert main(["run-program", "--app-name", "x"]) == 2
    err = capsys.readouterr().err
    assert "usage: tasktrace-admin run-program" in err and "no program given" in err


def test_run_python_passes_options_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """run-python execs this interpreter with the flags turned into variables."""
    calls = []
    monkeypatch.setattr(run, "exec_program", lambda argv, env: calls.append((argv, env)) or 0)
    assert main(["run-python", "--app-name", "svc", "--environment=prod", "job.py", "-x"]) == 0
    ((argv, env),) = calls
    assert argv == [sys.executable, "job.py", "-x"]
    assert env["TASKTRACE_APP_NAME"] == "svc" and env["TASKTRACE_ENVIRONMENT"] == "prod"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == run.BOOTSTRAP_DIR


def test_run_options_repr() -> None:
    """RunOptions shows what was parsed."""
    assert "app_name='a'" in repr(RunOptions(["p"], app_name="a"))


@pytest.mark.parametrize("search", [None, "", "{bin}", "{tmp}:{bin}", "{bin}:{bin}", ":{bin}"])
def test_which_agrees_with_shutil(
    search: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher's PATH search finds what shutil.which finds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tool").write_text("#!/bin/sh\n")
    (bin_dir / "tool").chmod(0o755)
    (bin_dir / "plain").write_text("")  # not executable
    (bin_dir / "dir").mkdir()  # a directory is never a program
    monkeypatch.chdir(bin_dir)
    monkeypatch.delenv("PATH", raising=False)  # None means no PATH, for shutil too
    path = None if search is None else search.format(bin=bin_dir, tmp=tmp_path)
    for name in ("tool", "plain", "dir", "missing", "sh"):
        assert run._which(name, path) == shutil.which(name, path=path), name


@pytest.mark.integration
def test_launcher_imports_little(tmp_path: Path) -> None:
    """The run-program fast path loads neither argparse, typing, shutil nor the agent."""
    code = (
        "import json, sys\n"
        "from tasktrace.admin import run\n"
        "run.exec_program = lambda argv, env: print(json.dumps(sorted(sys.modules))) or 0\n"
        "from tasktrace.admin import main\n"
        "sys.exit(main(['run-program', '--config', 'x.toml', 'prog', '--flag']))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    heavy = ("argparse", "typing", "shutil", "tasktrace.config", "tasktrace.agent", "logging")
    assert [name for name in heavy if name in modules] == []


_ADMIN = [sys.executable, "-m", "tasktrace"]


@pytest.mark.integration
def test_missing_config_says_run_program_named_it(tmp_path: Path) -> None:
    """``run-program --config /missing.toml`` says --config named the file, not the
    variable the launcher passes it on in; the program still runs, uninstrumented."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    missing = str(tmp_path / "missing.toml")
    result = subprocess.run(
        [*_ADMIN, "run-program", "--config", missing, sys.executable, "-c", "print('ran')"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == "ran\n"
    assert result.stderr == (
        f"tasktrace: {missing}: the config file does not exist (named by the --config "
        "option of tasktrace-admin run-program); check the path, or run 'tasktrace-admin "
        "generate-config' to create one; running uninstrumented\n"
    )


def test_build_environment_marks_the_config_from_the_option(tmp_path: Path) -> None:
    """--config is passed on in TASKTRACE_CONFIG_FILE, marked as coming from the option;
    without --config an inherited mark is dropped."""
    env = run.build_environment({}, config="c.toml", app_name=None, environment=None)
    assert env["TASKTRACE_CONFIG_FILE"] == env["TASKTRACE_BOOTSTRAP_CONFIG"]
    inherited = {"TASKTRACE_CONFIG_FILE": "/x.toml", "TASKTRACE_BOOTSTRAP_CONFIG": "/x.toml"}
    env = run.build_environment(inherited, config=None, app_name=None, environment=None)
    assert "TASKTRACE_BOOTSTRAP_CONFIG" not in env
