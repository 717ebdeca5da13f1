"""Tests for tasktrace.store: schema, migration, writes, report queries, parsing."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Tuple

import pytest

from tasktrace import store
from tasktrace.exceptions import TaskTraceError
from tasktrace.recorder import aggregate
from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch, DropCount


def _record(
    duration: float,
    *,
    app: str = "app",
    name: str = "jobs:run",
    start: float = 0.0,
    errors: Tuple[ErrorRecord, ...] = (),
) -> TransactionRecord:
    return TransactionRecord(
        app=app,
        name=name,
        group="Function",
        background=True,
        start=start or time.time(),
        duration=duration,
        exclusive=duration,
        cpu_time=0.0,
        pid=os.getpid(),
        thread_id=1,
        errors=errors,
        attributes={"tenant": "acme", "n": 3},
        segments=(
            SegmentRecord("db:query", "Function", 0.0, duration / 4, 1),
            SegmentRecord("jobs:step", "Function", 0.0, duration / 2, -1),
        ),
        trace_id=0xABC,
        span_id=0x1F,
    )


def _batch(*records: TransactionRecord, drops: Tuple[DropCount, ...] = ()) -> Batch:
    now = time.time()
    return Batch(
        records=records,
        metrics=aggregate(records),
        window_start=now - 5,
        window_end=now,
        drops=drops,
        pid=os.getpid(),
    )


def test_connect_creates_dirs_wal_and_schema(tmp_path: Path) -> None:
    """connect() creates parent directories, WAL mode and the current schema version."""
    path = tmp_path / "a" / "b" / "t.db"
    conn = store.connect(str(path))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_MS
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"transactions", "segments", "errors", "metrics", "drops", "schema_version"} <= tables
    conn.close()


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    """Opening an up-to-date store again changes nothing."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    conn = store.connect(path)
    assert store.migrate(conn) == store.SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A store written by a newer tasktrace raises a clear TaskTraceError."""
    path = str(tmp_path / "t.db")
    conn = store.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(TaskTraceError, match="newer"):
        store.connect(path)


def test_write_batches_stores_every_table(tmp_path: Path) -> None:
    """A batch lands in transactions, segments, errors, metrics and drops in one go."""
    error = ErrorRecord("builtins:ValueError", "boom", "Traceback...", time.time())
    conn = store.connect(str(tmp_path / "t.db"))
    batch = _batch(
        _record(0.5, errors=(error,)),
        _record(1.5),
        drops=(DropCount("app", "buffer_full", 7),),
    )
    assert store.write_batches(conn, [batch]) == 2
    row = conn.execute(
        "SELECT trace_id, span_id, error_type, error_message, attributes FROM transactions "
        "ORDER BY id LIMIT 1"
    ).fetchone()
    assert row == (
        "00000000000000000000000000000abc",
        "000000000000001f",
        "builtins:ValueError",
        "boom",
        '{"tenant": "acme", "n": 3}',
    )
    assert conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0] == 4
    assert conn.execute("SELECT type, message FROM errors").fetchall() == [
        ("builtins:ValueError", "boom")
    ]
    assert conn.execute("SELECT count, errors, total, min, max FROM metrics").fetchall() == [
        (2, 1, 2.0, 0.5, 1.5)
    ]
    assert conn.execute("SELECT app, reason, count FROM drops").fetchall() == [
        ("app", "buffer_full", 7)
    ]
    # Ids continue across batches.
    store.write_batches(conn, [_batch(_record(1.0))])
    assert [r[0] for r in conn.execute("SELECT id FROM transactions ORDER BY id")] == [1, 2, 3]
    conn.close()


def test_report_rows_contract_and_percentiles(tmp_path: Path) -> None:
    """report_rows returns the contract keys, exact metrics and nearest-rank percentiles."""
    path = str(tmp_path / "t.db")
    conn = store.connect(path)
    durations = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    store.write_batches(conn, [_batch(*[_record(d) for d in durations])])
    store.write_batches(conn, [_batch(_record(5.0, name="slow"))])
    conn.close()
    rows = store.report_rows(path)
    assert [tuple(r) for r in rows] == [store.REPORT_KEYS] * 2
    assert [r["name"] for r in rows] == ["jobs:run", "slow"]  # by total time, largest first
    first = rows[0]
    assert first["calls"] == 100 and first["errors"] == 0
    assert first["p50_ms"] == pytest.approx(50.0)
    assert first["p95_ms"] == pytest.approx(95.0)
    assert first["max_ms"] == pytest.approx(100.0)
    assert first["total_ms"] == pytest.approx(5050.0)


def test_report_rows_filters(tmp_path: Path) -> None:
    """--app, --name (glob) and --since narrow the rows."""
    path = str(tmp_path / "t.db")
    conn = store.connect(path)
    old = time.time() - 7200
    store.write_batches(conn, [_batch(_record(1.0, app="a", name="jobs:one"))])
    store.write_batches(conn, [_batch(_record(1.0, app="b", name="jobs:two"))])
    old_batch = _batch(_record(1.0, app="a", name="cron:old", start=old))._replace(
        window_start=old - 5, window_end=old
    )
    store.write_batches(conn, [old_batch])
    conn.close()
    assert {r["name"] for r in store.report_rows(path, app="a")} == {"jobs:one", "cron:old"}
    assert {r["name"] for r in store.report_rows(path, name_glob="jobs:*")} == {
        "jobs:one",
        "jobs:two",
    }
    assert {r["name"] for r in store.report_rows(path, since_seconds=3600)} == {
        "jobs:one",
        "jobs:two",
    }


def test_metrics_without_rows_have_no_percentiles(tmp_path: Path) -> None:
    """A key whose rows were all dropped still reports exact calls, with p50/p95 None."""
    path = str(tmp_path / "t.db")
    conn = store.connect(path)
    batch = _batch(_record(2.0))._replace(records=())
    store.write_batches(conn, [batch])
    conn.close()
    (row,) = store.report_rows(path)
    assert row["calls"] == 1 and row["p50_ms"] is None and row["max_ms"] == 2000.0


def test_percentile_nearest_rank() -> None:
    """percentile() is nearest-rank: always an observed value."""
    assert store.percentile([], 50) is None
    assert store.percentile([3.0], 95) == 3.0
    assert store.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert store.percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("30m", 1800), ("2h", 7200), ("7d", 604800), ("1.5H", 5400)]
)
def test_parse_since(text: str, seconds: float) -> None:
    """parse_since accepts s, m, h and d suffixes."""
    assert store.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "5x", "-1h", "0s", "h"])
def test_parse_since_rejects(text: str) -> None:
    """parse_since raises ValueError with the accepted forms in the message."""
    with pytest.raises(ValueError, match=r"45s, 30m, 2h, 7d|greater than zero"):
        store.parse_since(text)


def test_default_paths(tmp_path: Path) -> None:
    """XDG_DATA_HOME, then ~/.local/share; TASKTRACE_DB and explicit paths win; ~ expands."""
    assert store.default_db_path({"XDG_DATA_HOME": str(tmp_path)}) == str(
        tmp_path / "tasktrace" / "tasktrace.db"
    )
    assert store.default_db_path({}).endswith(
        os.path.join(".local", "share", "tasktrace", "tasktrace.db")
    )
    assert store.resolve_db_path(None, {"TASKTRACE_DB": str(tmp_path / "x.db")}) == str(
        tmp_path / "x.db"
    )
    assert store.resolve_db_path("~/y.db", {}) == os.path.expanduser("~/y.db")


def test_readonly_connect_does_not_create(tmp_path: Path) -> None:
    """Reading a missing store raises FileNotFoundError and creates nothing."""
    path = tmp_path / "missing.db"
    with pytest.raises(FileNotFoundError):
        store.report_rows(str(path))
    assert not path.exists()
    assert store.has_data(str(path)) is False


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Several connections writing at once all land (BEGIN IMMEDIATE + busy timeout)."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    errors = []

    def writer() -> None:
        conn = store.connect(path)
        try:
            for _ in range(20):
                store.write_batches(conn, [_batch(*[_record(0.001) for _ in range(10)])])
        except sqlite3.Error as exc:  # pragma: no cover - the failure we test against
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    (row,) = store.report_rows(path)
    assert row["calls"] == 6 * 20 * 10
