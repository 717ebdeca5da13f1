"""Tests for tasktrace.admin.report (run in-process on a store built here)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tasktrace import store
from tasktrace.admin import report
from tasktrace.histogram import MAX_RELATIVE_ERROR
from tasktrace.recorder import aggregate
from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch, DropCount


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    return parser.parse_args(list(argv))


def _db(tmp_path: Path) -> str:
    path = str(tmp_path / "r.db")
    records = tuple(
        TransactionRecord(
            "billing",
            name,
            "Function",
            True,
            time.time(),
            duration,
            duration,
            0.0,
            os.getpid(),
            1,
            (),
            {},
            (),
            1,
            1,
        )
        for name, duration in (("jobs:a", 0.002), ("jobs:a", 0.004), ("jobs:b", 1.5))
    )
    conn = store.connect(path)
    store.write_batches(
        conn,
        [
            Batch(
                records,
                aggregate(records),
                time.time() - 1,
                time.time(),
                (DropCount("billing", "buffer_full", 2),),
                os.getpid(),
            )
        ],
    )
    conn.close()
    return path


def test_table_sorted_by_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table lists the largest total first and notes drops."""
    assert report.run(_args("--db", _db(tmp_path))) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "APP",
        "GROUP",
        "NAME",
        "CALLS",
        "ERRORS",
        "P50",
        "MS",
        "P95",
        "MS",
        "MAX",
        "MS",
        "TOTAL",
        "MS",
    ]
    assert "jobs:b" in out[1] and "jobs:a" in out[2]
    assert any("buffer_full: 2" in line for line in out)
    # The percentiles cover the dropped transactions too (the histograms count them).
    (note,) = [line for line in out if line.startswith("note:")]
    assert "p50/p95" in note and "only the stored" not in note


def test_json_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON output is a list of objects with exactly the contract keys."""
    assert report.run(_args("--db", _db(tmp_path), "--format", "json")) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(tuple(row) == store.REPORT_KEYS for row in rows)
    assert rows[1]["calls"] == 2 and rows[1]["p50_ms"] == pytest.approx(
        2.0, rel=MAX_RELATIVE_ERROR * (1 + 1e-9)
    )


def test_db_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --db, TASKTRACE_DB names the store."""
    monkeypatch.setenv("TASKTRACE_DB", _db(tmp_path))
    assert report.run(_args("--format", "json")) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_missing_and_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or empty store: one line on stderr, exit 1, nothing on stdout."""
    assert report.run(_args("--db", str(tmp_path / "nope.db"))) == 1
    empty = tmp_path / "empty.db"
    store.connect(str(empty)).close()
    assert report.run(_args("--db", str(empty))) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("no tasktrace data in") == 2


def test_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not a tasktrace store exits 2 with a message, no traceback."""
    path = tmp_path / "x.db"
    path.write_text("hello" * 1000)
    assert report.run(_args("--db", str(path))) == 2
    assert "x.db is not a SQLite database; point --db" in capsys.readouterr().err


def test_no_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Filters that match nothing: exit 0, a note on stderr (table) or [] (json)."""
    db = _db(tmp_path)
    assert report.run(_args("--db", db, "--app", "other")) == 0
    assert "match" in capsys.readouterr().err
    assert report.run(_args("--db", db, "--app", "other", "--format", "json")) == 0
    assert json.loads(capsys.readouterr().out) == []


def _named_db(tmp_path: Path, *names: str) -> str:
    path = str(tmp_path / "named.db")
    records = tuple(
        TransactionRecord(
            "app\x1b]0;title\x07",
            name,
            "Function",
            True,
            time.time(),
            0.01,
            0.01,
            0.0,
            os.getpid(),
            1,
            (),
            {},
            (),
            1,
            1,
        )
        for name in names
    )
    conn = store.connect(path)
    now = time.time()
    store.write_batches(conn, [Batch(records, aggregate(records), now - 1, now, (), os.getpid())])
    conn.close()
    return path


def test_table_never_passes_terminal_controls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names holding escape sequences, CR, BEL or bidi overrides are shown as escapes."""
    path = _named_db(tmp_path, "jobs:\x1b[2J\x1b[Hwipe", "jobs:ok\rFAKE", "jobs:\u202erev")
    assert report.run(_args("--db", path)) == 0
    out = capsys.readouterr().out
    for raw in ("\x1b", "\r", "\x07", "\u202e"):
        assert raw not in out
    assert "jobs:\\x1b[2J\\x1b[Hwipe" in out and "jobs:ok\\rFAKE" in out
    assert "app\\x1b]0;title\\x07" in out and "jobs:\\u202erev" in out
    # JSON stays exact: the names as the program wrote them.
    assert report.run(_args("--db", path, "--format", "json")) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert "jobs:ok\rFAKE" in names


def test_table_aligns_wide_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Columns after a name with wide or combining characters line up by terminal cells."""
    from tasktrace._sanitize import display_width

    path = _named_db(tmp_path, "jobs:\u4e2d\u6587\u4efb\u52a1", "jobs:cafe\u0301", "jobs:plain")
    assert report.run(_args("--db", path)) == 0
    lines = capsys.readouterr().out.splitlines()
    calls_end = {display_width(line[: line.index(" 1 ") + 2]) for line in lines[1:4]}
    assert len(calls_end) == 1


def _foreign_db(path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'ann')")
    conn.commit()
    conn.close()


def _truncated_db(tmp_path: Path) -> Path:
    source = Path(_db(tmp_path))
    store.connect(str(source)).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = source.read_bytes()
    path = tmp_path / "cut.db"
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_db(tmp_path: Path) -> Path:
    source = Path(_db(tmp_path))
    conn = store.connect(str(source))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(source.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[100:page_size] = b"\xff" * (page_size - 100)  # the schema page, overwritten
    path = tmp_path / "bad.db"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "dir.db", "is a directory, not a file"),
        (lambda tmp: tmp / "foreign.db", "is a SQLite database but not a tasktrace store"),
        (_truncated_db, "is a corrupt or truncated SQLite database"),
        (_corrupt_db, "is a corrupt or truncated SQLite database"),
    ],
    ids=["directory", "foreign", "truncated", "corrupt"],
)
def test_unusable_store_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, problem: str
) -> None:
    """A directory, another program's database or a damaged store: one line saying which."""
    (tmp_path / "dir.db").mkdir()
    _foreign_db(tmp_path / "foreign.db")
    path = make(tmp_path)
    assert report.run(_args("--db", str(path))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path} {problem}" in err


def test_newer_schema_says_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store of a newer schema: one line saying so and to upgrade tasktrace."""
    path = _db(tmp_path)
    conn = store.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    assert report.run(_args("--db", path)) == 2
    err = capsys.readouterr().err
    assert "schema version 99, newer than" in err and "upgrade tasktrace" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store without read permission: one line saying it cannot be read."""
    path = Path(_db(tmp_path))
    os.chmod(path, 0)
    try:
        assert report.run(_args("--db", str(path))) == 2
    finally:
        os.chmod(path, 0o600)
    assert "cannot be read" in capsys.readouterr().err


def test_json_with_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--with-drops wraps the default rows with the drop counts the table notes."""
    path = _db(tmp_path)
    assert report.run(_args("--db", path, "--format", "json")) == 0
    plain = json.loads(capsys.readouterr().out)
    assert isinstance(plain, list)
    assert report.run(_args("--db", path, "--format", "json", "--with-drops")) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {"tasks": plain, "dropped": {"buffer_full": 2}}
