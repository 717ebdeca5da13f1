"""Tests for tasktrace.reporters.console."""

from __future__ import annotations

import io
import os
import time

import pytest

from tasktrace.records import ErrorRecord, TransactionRecord
from tasktrace.reporters.base import Batch
from tasktrace.reporters.console import ConsoleReporter, format_line


def _record(error: bool = False) -> TransactionRecord:
    errors = (ErrorRecord("builtins:ValueError", "bad\ncard", "tb", time.time()),) if error else ()
    return TransactionRecord(
        "billing-worker",
        "jobs:send_invoices",
        "Function",
        True,
        time.time(),
        0.0123,
        0.01,
        0.0,
        os.getpid(),
        1,
        errors,
        {},
        (),
        1,
        1,
    )


def test_format_ok_and_error_lines() -> None:
    """A line says app, group/name, milliseconds and ok or the error on one line."""
    assert format_line(_record()) == (
        "tasktrace: billing-worker Function/jobs:send_invoices 12.3 ms ok"
    )
    assert format_line(_record(error=True)).endswith("12.3 ms ERROR builtins:ValueError: bad card")


def test_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a stream the lines go to sys.stderr, never stdout."""
    result = ConsoleReporter().export(Batch((_record(), _record(error=True))))
    assert result.success and result.exported == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 2


def test_broken_stream_is_a_failed_export() -> None:
    """A closed stream makes a failed result instead of an exception."""
    stream = io.StringIO()
    stream.close()
    result = ConsoleReporter(stream=stream).export(Batch((_record(),)))
    assert not result.success and result.dropped == 1


def test_format_line_never_passes_terminal_controls() -> None:
    """Escape sequences, CR, BEL and bidi overrides in names and messages are shown escaped."""
    record = _record(error=True)._replace(
        app="app\x1b]0;owned\x07",
        name="jobs:\x1b[2Jrun\rFAKE",
        group="G\u202e",
        errors=(ErrorRecord("builtins:ValueError", "bad \x1b[31mred\x1b[0m\x07", "tb", 0.0),),
    )
    line = format_line(record)
    assert "\x1b" not in line and "\r" not in line and "\x07" not in line
    assert "\u202e" not in line
    assert "app\\x1b]0;owned\\x07 G\\u202e/jobs:\\x1b[2Jrun\\rFAKE" in line
    assert "bad \\x1b[31mred\\x1b[0m\\x07" in line
