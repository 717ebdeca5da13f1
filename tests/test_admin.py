"""tasktrace-admin's config commands, help and version, run in-process through main()."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasktrace import hooks
from tasktrace._compat import load_toml
from tasktrace._version import __version__
from tasktrace.admin import main
from tasktrace.config import parse

JOBS = """
def send(n):
    return n

class Exporter:
    def run(self):
        return 1

    @classmethod
    def make(cls):
        return cls()
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch project directory, current and importable, cleaned from sys.modules after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "adminjobs.py").write_text(JOBS)
    yield tmp_path
    sys.modules.pop("adminjobs", None)
    hooks._reset_for_tests()


def test_validate_config_resolves_every_target(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate-config prints a line per target and exits 0 when all resolve."""
    (project / "tasktrace.toml").write_text(
        '[[background_task]]\nfunction = "adminjobs:send"\n'
        '[[background_task]]\nfunction = "adminjobs:Exporter.*"\n'
        '[[function_trace]]\nfunction = "adminjobs:Exporter.make"\n'
    )
    assert main(["validate-config"]) == 0
    out = capsys.readouterr().out
    assert "ok    background_task adminjobs:send" in out
    assert "adminjobs:Exporter.*  -> adminjobs:Exporter.run, Exporter.make" in out
    assert "3 target(s), 0 error(s)" in out


def test_validate_config_reports_missing_module_and_attribute(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing module and a misspelt attribute are errors with a suggestion; exit 1."""
    (project / "tasktrace.toml").write_text(
        '[[background_task]]\nfunction = "no_such_module_xyz:job"\n'
        '[[background_task]]\nfunction = "adminjobs:sned"\n'
    )
    assert main(["validate-config"]) == 1
    out = capsys.readouterr().out
    assert "module not found: 'no_such_module_xyz'" in out
    assert "did you mean" in out and "'send'" in out
    assert "2 error(s)" in out


def test_validate_config_reports_every_config_problem(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid file lists all its problems and exits 1."""
    (project / "bad.toml").write_text('app_nam = "x"\nharvest_interval = -1\n')
    assert main(["validate-config", "bad.toml"]) == 1
    out = capsys.readouterr().out
    assert "app_nam" in out and "harvest_interval" in out
    assert "2 problem(s) found" in out


def test_generate_config_writes_a_valid_starter(project: Path) -> None:
    """generate-config writes a starter that parses, and refuses to overwrite it."""
    target = project / "starter.toml"
    assert main(["generate-config", str(target)]) == 0
    parse(load_toml(target.read_text()), str(target))
    assert main(["generate-config", str(target)]) == 1
    assert main(["generate-config", str(target), "--force"]) == 0


def test_generate_config_output_passes_validate_config_as_written(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The starter generate-config writes validates unchanged: its example targets are comments."""
    assert main(["generate-config", "tasktrace.toml"]) == 0
    capsys.readouterr()
    assert main(["validate-config", "tasktrace.toml"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "0 target(s), 0 error(s)" in out


def test_generate_config_target_writes_entries_that_validate(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each --target MODULE:OBJECT becomes a [[background_task]] entry that validates."""
    argv = ["generate-config", "tasktrace.toml", "--target", "adminjobs:send"]
    assert main([*argv, "--target", "adminjobs:Exporter.*"]) == 0
    settings = parse(load_toml((project / "tasktrace.toml").read_text()), "tasktrace.toml")
    assert [t.function for t in settings.background_tasks] == [
        "adminjobs:send",
        "adminjobs:Exporter.*",
    ]
    capsys.readouterr()
    assert main(["validate-config", "tasktrace.toml"]) == 0
    out = capsys.readouterr().out
    assert "ok    background_task adminjobs:send  -> adminjobs:send" in out
    assert "2 target(s), 0 error(s)" in out


def test_generate_config_refuses_a_malformed_target(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --target that is not "module:object" is an error (exit 2) and nothing is written."""
    assert main(["generate-config", "tasktrace.toml", "--target", "adminjobs.send"]) == 2
    assert "has no ':'" in capsys.readouterr().err
    assert not (project / "tasktrace.toml").exists()


def test_generate_config_to_stdout(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without FILE the starter goes to stdout."""
    assert main(["generate-config"]) == 0
    assert "[[background_task]]" in capsys.readouterr().out


def test_show_config_lists_sources_and_redacts_secrets(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """show-config names where each value came from and never prints header values."""
    (project / "tasktrace.toml").write_text(
        'app_name = "from-file"\n[reporter]\ntype = "otlp"\nheaders = { "api-key" = "s3cr3t-value" }\n'
    )
    monkeypatch.setenv("TASKTRACE_SHUTDOWN_TIMEOUT", "4")
    assert main(["show-config"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t-value" not in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "from-file" in lines["app_name"] and "tasktrace.toml" in lines["app_name"]
    assert "TASKTRACE_SHUTDOWN_TIMEOUT" in lines["shutdown_timeout"]
    assert "default" in lines["harvest_interval"]


def test_validate_and_show_config_accept_config_option(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate-config and show-config take --config FILE as run-program does."""
    (project / "other.toml").write_text(
        'app_name = "other"\n[[background_task]]\nfunction = "adminjobs:send"\n'
    )
    assert main(["validate-config", "--config", "other.toml"]) == 0
    out = capsys.readouterr().out
    assert "other.toml" in out and "1 target(s), 0 error(s)" in out
    assert main(["show-config", "--config", "other.toml"]) == 0
    assert '"other"' in capsys.readouterr().out
    assert main(["show-config", "other.toml", "--config", "./other.toml"]) == 0


def test_config_file_given_twice_differently_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """FILE and a different --config exit 2 with one clear line; nothing is loaded."""
    for command in ("validate-config", "show-config"):
        assert main([command, "a.toml", "--config", "b.toml"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (
            f"tasktrace-admin {command}: error: the config file is given twice, as FILE "
            "(a.toml) and as --config (b.toml); give only one\n"
        )


def test_missing_config_file_names_its_origin(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file says whether FILE or --config named it."""
    assert main(["validate-config", "--config", "nope.toml"]) == 1
    assert "(named by the --config option)" in capsys.readouterr().out
    assert main(["show-config", "nope.toml"]) == 1
    assert "(named by the FILE argument)" in capsys.readouterr().out


def test_validate_config_explains_class_targets(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target naming a class fails with what to target instead; a glob that matched
    only classes fails naming them."""
    (project / "tasktrace.toml").write_text(
        '[[background_task]]\nfunction = "adminjobs:Exporter"\n'
        '[[background_task]]\nfunction = "adminjobs:Ex*"\n'
    )
    assert main(["validate-config"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  background_task adminjobs:Exporter  'adminjobs:Exporter' names a class" in out
    assert "'adminjobs:Exporter.run'" in out
    assert "matches nothing in 'adminjobs' (it passes over the classes 'Exporter'" in out
    assert "2 target(s), 2 error(s)" in out


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version; help lists the commands; help COMMAND shows its usage."""
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    for command in ("run-program", "validate-config", "show-config", "report"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["help", "report"])
    assert "--since" in capsys.readouterr().out


def test_no_command_prints_usage_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    """tasktrace-admin alone is a usage error."""
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_unknown_help_topic(capsys: pytest.CaptureFixture[str]) -> None:
    """help for an unknown command says so with status 2."""
    assert main(["help", "nope"]) == 2
    assert "unknown command" in capsys.readouterr().err
