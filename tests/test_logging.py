"""tasktrace._logging: the lazy logger and where ``configure()`` sends its messages."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import List

import pytest

from tasktrace import _logging


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts and ends with tasktrace's log unconfigured."""
    _logging._reset_for_tests()
    yield
    _logging._reset_for_tests()


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_get_logger_gives_one_lazy_logger_per_name() -> None:
    """get_logger(name) returns the same object each time, distinct per name."""
    assert _logging.get_logger() is _logging.get_logger("tasktrace")
    assert _logging.get_logger("tasktrace.x") is _logging.get_logger("tasktrace.x")
    assert _logging.get_logger("tasktrace.x") is not _logging.get_logger()
    assert _logging.get_logger("tasktrace.x").logger is logging.getLogger("tasktrace.x")


def test_logging_is_imported_only_on_the_first_message() -> None:
    """Importing, getting a logger and configuring it do not import logging; a message does."""
    run = _python(
        """
        import sys
        from tasktrace import _logging
        log = _logging.get_logger("tasktrace.lazy")
        _logging.configure("warning", "stderr")
        print("logging" in sys.modules)
        log.warning("first %s", "message")
        print("logging" in sys.modules)
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True"]
    assert run.stderr.startswith("tasktrace WARNING [pid ")
    assert run.stderr.rstrip().endswith("] first message")


def test_configure_stderr_formats_and_filters_by_level(capsys: pytest.CaptureFixture[str]) -> None:
    """Messages at or above the level go to stderr as 'tasktrace LEVEL [pid N] text'."""
    _logging.configure("info", "stderr")
    log = _logging.get_logger("tasktrace.test")
    log.debug("hidden")
    log.info("shown %d", 1)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"tasktrace INFO [pid {os.getpid()}] shown 1\n"


def test_configure_stdout_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """log_file = "stdout" is the one way tasktrace's messages reach stdout."""
    _logging.configure("warning", "stdout")
    _logging.get_logger().warning("to stdout")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.endswith("] to stdout\n")


def test_configure_a_file_path_appends_there(tmp_path: Path) -> None:
    """A path target gets the messages, UTF-8 encoded."""
    path = tmp_path / "tasktrace.log"
    _logging.configure("warning", str(path))
    _logging.get_logger().warning("naïve ✓")
    _logging._reset_for_tests()  # closes the file
    assert path.read_text(encoding="utf-8").endswith("] naïve ✓\n")


def test_unopenable_log_file_falls_back_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log file that cannot be opened is said once on stderr, and messages go to stderr."""
    target = str(tmp_path / "missing-dir" / "t.log")
    _logging.configure("warning", target)
    _logging.get_logger().warning("still said")
    err = capsys.readouterr().err
    assert f"tasktrace: cannot open log file {target!r}" in err and "using stderr" in err
    assert err.rstrip().endswith("] still said")


def test_configuring_again_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """A second configure() replaces the first: each message is written once."""
    _logging.configure("warning", "stderr")
    _logging.configure("warning", "stderr")
    _logging.get_logger().warning("once")
    assert capsys.readouterr().err.count("once") == 1


def test_the_programs_root_logger_does_not_see_tasktrace_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Configured, tasktrace's log does not propagate into the program's own logging."""
    root_handler = _ListHandler()
    logging.getLogger().addHandler(root_handler)
    try:
        _logging.configure("warning", "stderr")
        _logging.get_logger("tasktrace.child").warning("ours only")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert root_handler.messages == []
    assert "ours only" in capsys.readouterr().err


def test_reset_removes_the_handler_and_propagates_again(capsys: pytest.CaptureFixture[str]) -> None:
    """After _reset_for_tests() nothing is written by tasktrace's handler and records propagate."""
    _logging.configure("warning", "stderr")
    _logging._reset_for_tests()
    root_handler = _ListHandler()
    logging.getLogger().addHandler(root_handler)
    try:
        _logging.get_logger().warning("after reset")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert root_handler.messages == ["after reset"]
    assert "tasktrace WARNING" not in capsys.readouterr().err
