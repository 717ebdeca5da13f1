"""initialize(), flush() and shutdown_agent(): the agent's life cycle."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasktrace
from tasktrace import _logging, hooks
from tasktrace._state import STATE
from tasktrace.testing import MemoryRecorder


@pytest.fixture(autouse=True)
def _clean_logging_and_hooks() -> Iterator[None]:
    """initialize() configures logging and hooks; undo both after each test."""
    yield
    _logging._reset_for_tests()
    hooks._reset_for_tests()


def test_initialize_loads_the_file_and_is_idempotent(tmp_path: Path) -> None:
    """The first call applies the file; later calls return the same settings unchanged."""
    config = tmp_path / "a.toml"
    config.write_text('app_name = "first"\n')
    other = tmp_path / "b.toml"
    other.write_text('app_name = "second"\n')
    settings = tasktrace.initialize(str(config))
    assert settings.app_name == "first"
    assert STATE.settings.app_name == "first"
    assert tasktrace.initialize(str(other)) is settings
    assert STATE.settings.app_name == "first"


def test_initialize_raises_on_a_bad_config(tmp_path: Path) -> None:
    """A bad file raises ConfigurationError (a TaskTraceError) and changes nothing."""
    config = tmp_path / "bad.toml"
    config.write_text("harvest_interval = 'soon'\n")
    with pytest.raises(tasktrace.ConfigurationError) as exc:
        tasktrace.initialize(str(config))
    assert isinstance(exc.value, tasktrace.TaskTraceError)
    assert "harvest_interval" in str(exc.value)
    assert not STATE.initialized


def test_initialize_ignore_errors_keeps_defaults(tmp_path: Path) -> None:
    """ignore_errors=True logs the problem and carries on with the defaults."""
    config = tmp_path / "bad.toml"
    config.write_text("harvest_interval = 'soon'\n")
    settings = tasktrace.initialize(str(config), ignore_errors=True)
    assert settings.harvest_interval == 5.0
    assert STATE.initialized


def test_initialize_applies_the_environment_table(tmp_path: Path) -> None:
    """environment= picks the [env.NAME] table."""
    config = tmp_path / "t.toml"
    config.write_text('app_name = "base"\n[env.production]\napp_name = "prod"\n')
    assert tasktrace.initialize(str(config), environment="production").app_name == "prod"


def test_disabled_config_records_nothing(tmp_path: Path) -> None:
    """enabled = false in the file: decorated functions run, nothing is recorded."""
    config = tmp_path / "t.toml"
    config.write_text("enabled = false\n")
    tasktrace.initialize(str(config))
    recorder = MemoryRecorder()
    STATE.set_recorder(recorder)

    @tasktrace.background_task()
    def job() -> int:
        return 7

    assert job() == 7
    assert recorder.records == []


def test_flush_and_shutdown_without_a_recorder_are_true() -> None:
    """With nothing recorded yet there is nothing to deliver."""
    assert tasktrace.flush(0.1) is True
    assert tasktrace.shutdown_agent(0.1) is True


def test_shutdown_then_record_again_restarts_delivery() -> None:
    """Work finished after shutdown_agent() is not lost: a new recorder is created."""
    first = MemoryRecorder()
    STATE.set_recorder(first)
    assert tasktrace.shutdown_agent(0.1) is True
    assert STATE.recorder is None
    second = MemoryRecorder()
    STATE.get_recorder = lambda: second  # type: ignore[method-assign]
    try:

        @tasktrace.background_task()
        def job() -> None:
            pass

        job()
    finally:
        del STATE.get_recorder
    assert len(second.records) == 1


def _run(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.integration
def test_auto_with_bad_config_is_one_stderr_line(tmp_path: Path) -> None:
    """import tasktrace.auto with a broken config: one stderr line, program continues."""
    (tmp_path / "tasktrace.toml").write_text("app_name = [\n")
    result = _run("import tasktrace.auto; print('after')", tmp_path)
    assert result.returncode == 0
    assert result.stdout == "after\n"
    assert len(result.stderr.strip().splitlines()) == 1
    assert "running uninstrumented" in result.stderr


@pytest.mark.integration
def test_auto_strict_raises(tmp_path: Path) -> None:
    """TASKTRACE_STRICT=1 makes import tasktrace.auto raise ConfigurationError."""
    (tmp_path / "tasktrace.toml").write_text("app_name = [\n")
    result = _run("import tasktrace.auto", tmp_path, TASKTRACE_STRICT="1")
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr


@pytest.mark.integration
def test_logging_never_goes_to_stdout(tmp_path: Path) -> None:
    """With debug logging on, tasktrace's messages go to stderr and stdout stays the program's."""
    (tmp_path / "tasktrace.toml").write_text(
        'log_level = "debug"\n[[background_task]]\nfunction = "missing_mod_xyz:job"\n'
        '[[background_task]]\nfunction = "json:no_such_function"\n'
    )
    result = _run("import tasktrace.auto, json; print('out')", tmp_path)
    assert result.stdout == "out\n"
    assert "no_such_function" in result.stderr
