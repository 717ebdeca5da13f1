"""Tests for tasktrace.reporters.jsonl."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tasktrace.config import ReporterSettings, Settings
from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch
from tasktrace.reporters.jsonl import JsonlReporter, jsonl_path


def _record() -> TransactionRecord:
    return TransactionRecord(
        "app",
        "jobs:run",
        "Task",
        True,
        1700000000.5,
        0.25,
        0.2,
        0.1,
        os.getpid(),
        9,
        (ErrorRecord("builtins:KeyError", "'x'", "tb", time.time()),),
        {"n": 1},
        (SegmentRecord("db:q", "Function", 0.01, 0.05, -1),),
        0xABC,
        0x1F,
    )


def test_one_json_object_per_line(tmp_path: Path) -> None:
    """Each transaction is one JSON line with the record's fields and hex ids; appends."""
    path = tmp_path / "sub" / "out.jsonl"
    reporter = JsonlReporter(path=str(path))
    assert reporter.export(Batch((_record(), _record()))).exported == 2
    reporter.export(Batch((_record(),)))
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    data = json.loads(lines[0])
    assert data["trace_id"] == "00000000000000000000000000000abc"
    assert data["span_id"] == "000000000000001f"
    assert data["name"] == "jobs:run" and data["group"] == "Task" and data["duration"] == 0.25
    assert data["errors"][0]["type"] == "builtins:KeyError"
    assert data["segments"][0]["name"] == "db:q"
    assert data["attributes"] == {"n": 1}


def test_path_rules(tmp_path: Path) -> None:
    """The path is [reporter] path, or next to the database when sqlite is configured too."""
    db = str(tmp_path / "store.db")
    alone = Settings()._replace(reporter=ReporterSettings(types=("jsonl",), path=db))
    both = Settings()._replace(reporter=ReporterSettings(types=("sqlite", "jsonl"), path=db))
    assert jsonl_path(alone) == db
    assert jsonl_path(both) == str(tmp_path / "store.jsonl")
    assert jsonl_path(Settings()) == os.path.abspath("tasktrace.jsonl")


def test_unwritable_path_is_a_failed_export(tmp_path: Path) -> None:
    """An unwritable file gives a failed result, not an exception."""
    reporter = JsonlReporter(path=str(tmp_path))  # a directory
    result = reporter.export(Batch((_record(),)))
    assert not result.success and result.dropped == 1


def test_output_file_is_private(tmp_path: Path) -> None:
    """The jsonl file is created 0600 in directories created 0700, whatever the umask."""
    import stat

    old = os.umask(0o022)
    try:
        path = tmp_path / "out" / "t.jsonl"
        assert JsonlReporter(path=str(path)).export(Batch((_record(),))).success
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
