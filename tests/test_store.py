"""Tests for tasktrace.store: schema, migration, packed writes and reads, report queries,
parsing."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, List, Sequence, Tuple

import pytest

from tasktrace import store
from tasktrace.exceptions import TaskTraceError
from tasktrace.histogram import MAX_RELATIVE_ERROR
from tasktrace.recorder import aggregate
from tasktrace.records import EMPTY_ATTRIBUTES, ErrorRecord, SegmentRecord, TransactionRecord
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


def _read(conn: sqlite3.Connection, **filters: Any) -> List[TransactionRecord]:
    return list(store.read_transactions(conn, **filters))


def _assert_same(got: Sequence[TransactionRecord], want: Sequence[TransactionRecord]) -> None:
    """Field by field, with the attributes read-only and cpu_time None kept None."""
    assert len(got) == len(want)
    for read, written in zip(got, want):
        assert read._asdict() == written._asdict()
        assert isinstance(read.attributes, MappingProxyType)
        assert (read.cpu_time is None) == (written.cpu_time is None)
        assert type(read.background) is bool


def test_connect_creates_dirs_wal_and_schema(tmp_path: Path) -> None:
    """connect() creates parent directories, WAL mode and the current schema version."""
    path = tmp_path / "a" / "b" / "t.db"
    conn = store.connect(str(path))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_MS
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [
        (store.SCHEMA_VERSION,)
    ]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {
        "transaction_blocks",
        "segment_blocks",
        "errors",
        "metrics",
        "drops",
        "schema_version",
        "trace_index",
        "running",
        "last_runs",
        "schedules",
    }
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
    """A batch lands as a block, its segments, errors, metrics and drops in one go."""
    error = ErrorRecord("builtins:ValueError", "boom", "Traceback...", time.time())
    conn = store.connect(str(tmp_path / "t.db"))
    batch = _batch(
        _record(0.5, errors=(error,)),
        _record(1.5),
        drops=(DropCount("app", "buffer_full", 7),),
    )
    assert store.write_batches(conn, [batch]) == 2
    row = conn.execute(
        "SELECT id, app, name, grp, background, pid, window_start, window_end, count, "
        "lower(hex(substr(trace_id, 17, 16))), lower(hex(substr(span_id, 9, 8))), attributes "
        "FROM transaction_blocks"
    ).fetchone()
    assert row == (
        1,
        "app",
        "jobs:run",
        "Function",
        1,
        os.getpid(),
        batch.window_start,
        batch.window_end,
        2,
        "00000000000000000000000000000abc",
        "000000000000001f",
        '{"0": {"tenant": "acme", "n": 3}, "1": {"tenant": "acme", "n": 3}}',
    )
    assert conn.execute("SELECT block_id, count FROM segment_blocks").fetchall() == [(1, 4)]
    assert conn.execute("SELECT block_id, txn, type, message FROM errors").fetchall() == [
        (1, 0, "builtins:ValueError", "boom")
    ]
    assert conn.execute("SELECT count, errors, total, min, max FROM metrics").fetchall() == [
        (2, 1, 2.0, 0.5, 1.5)
    ]
    assert conn.execute("SELECT app, reason, count FROM drops").fetchall() == [
        ("app", "buffer_full", 7)
    ]
    # Block ids continue across batches.
    store.write_batches(conn, [_batch(_record(1.0))])
    assert [r[0] for r in conn.execute("SELECT id FROM transaction_blocks ORDER BY id")] == [1, 2]
    conn.close()


def _varied_records() -> List[TransactionRecord]:
    """Records exercising every field: several keys and pids, unicode, huge attributes,
    cpu_time None next to measured, errors, nested segments, dropped segments."""
    now = time.time()
    huge = {f"k{i:03d}": "\u00e9" * 255 for i in range(128)}
    huge.update(big=2**63 - 1, small=-(2**63), pi=3.25, yes=True, no=False)
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: \u2603'
    records = []
    for i in range(40):
        nested = (
            SegmentRecord("db:query \u2603", "Datastore", 0.001, 0.25, -1),
            SegmentRecord("db:fetch", "Function", 0.002, 0.125, 0),
            SegmentRecord("db:parse", "Function", 0.003, 0.0625, 1),
            SegmentRecord("cache:get", "Function", 0.5, 0.01, -1),
        )
        records.append(
            TransactionRecord(
                app="billing" if i % 4 else "\u8acb\u6c42",
                name=f"jobs:r\u00e9sum\u00e9{i % 3}",
                group="Function" if i % 5 else "Task",
                background=i % 7 != 0,
                start=now + i / 7,
                duration=1.0 + i / 3,
                exclusive=0.5 + i / 11 if i % 2 else 1.0 + i / 3,
                cpu_time=None if i % 3 == 0 else i / 13,
                pid=1000 + i % 2,
                thread_id=(2**64 - 1 - i) if i % 6 else 1,
                errors=(
                    ErrorRecord("builtins:ValueError", "first \u2603", traceback, now + i),
                    ErrorRecord("jobs:Retry", "", "", now + i + 0.5),
                )
                if i % 9 == 0
                else (),
                attributes=MappingProxyType(huge if i == 5 else {"i": i})
                if i % 4 == 1
                else EMPTY_ATTRIBUTES,
                segments=nested if i % 2 else (),
                trace_id=(2**128 - 1 - i) if i % 2 else i + 1,
                span_id=(2**64 - 1 - i) if i % 2 else i + 1,
                dropped_segments=i * 1000 if i % 8 == 3 else 0,
            )
        )
    return records


def _by_trace_id(records: Sequence[TransactionRecord]) -> List[TransactionRecord]:
    return sorted(records, key=lambda r: r.trace_id)


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    """Every field of every record reads back as written, whatever its key or content."""
    records = _varied_records()
    conn = store.connect(str(tmp_path / "t.db"))
    assert store.write_batches(conn, [_batch(*records)]) == len(records)
    got = _read(conn)
    _assert_same(_by_trace_id(got), _by_trace_id(records))
    # Each key's records come back in the order they were written.
    keys = {(r.app, r.name, r.group, r.background, r.pid) for r in records}
    for key in keys:
        mine = [r for r in records if (r.app, r.name, r.group, r.background, r.pid) == key]
        assert [r for r in got if (r.app, r.name, r.group, r.background, r.pid) == key] == mine
    (blocks,) = conn.execute("SELECT COUNT(*) FROM transaction_blocks").fetchone()
    assert blocks == len(keys)
    conn.close()


def test_block_columns_are_readable_with_sql(tmp_path: Path) -> None:
    """Ids decode with hex(substr()); shared threads, exclusive equal to duration, no CPU
    time, no attributes and no dropped segments are stored compactly (once or NULL)."""
    plain = [
        _record(0.25 * (i + 1))._replace(
            exclusive=0.25 * (i + 1),
            cpu_time=None,
            segments=(),
            attributes=EMPTY_ATTRIBUTES,
            trace_id=(0xF << 124) + i,
            span_id=(0xE << 60) + i,
        )
        for i in range(3)
    ]
    conn = store.connect(str(tmp_path / "t.db"))
    store.write_batches(conn, [_batch(*plain)])
    row = conn.execute(
        "SELECT count, first_start, last_start, length(start), length(thread_id), exclusive, "
        "cpu_time, dropped_segments, attributes, lower(hex(substr(trace_id, 16 * 2 + 1, 16))), "
        "lower(hex(substr(span_id, 8 * 2 + 1, 8))) FROM transaction_blocks"
    ).fetchone()
    starts = [r.start for r in plain]
    assert row == (
        3,
        min(starts),
        max(starts),
        24,
        8,
        None,
        None,
        None,
        None,
        plain[2].trace_id_hex,
        plain[2].span_id_hex,
    )
    assert conn.execute("SELECT COUNT(*) FROM segment_blocks").fetchone() == (0,)
    _assert_same(_read(conn), plain)
    conn.close()


def test_big_and_interleaved_batches_are_split_in_order(tmp_path: Path) -> None:
    """A key with more than MAX_BLOCK_SIZE transactions gets several blocks; keys that
    alternate within a batch each keep their own order."""
    size = store.MAX_BLOCK_SIZE
    one_key = [_record(0.001)._replace(trace_id=i + 1, segments=()) for i in range(2 * size + 5)]
    mixed = [
        _record(0.001, name=f"jobs:{i % 2}")._replace(trace_id=10**6 + i, segments=())
        for i in range(size + 10)
    ]
    conn = store.connect(str(tmp_path / "t.db"))
    assert store.write_batches(conn, [_batch(*one_key), _batch(*mixed)]) == 3 * size + 15
    counts = conn.execute("SELECT name, count FROM transaction_blocks ORDER BY id").fetchall()
    assert counts == [
        ("jobs:run", size),
        ("jobs:run", size),
        ("jobs:run", 5),
        ("jobs:0", size // 2 + 5),
        ("jobs:1", size // 2 + 5),
    ]
    got = _read(conn)
    _assert_same(got[: 2 * size + 5], one_key)
    _assert_same(got[2 * size + 5 :], mixed[0::2] + mixed[1::2])
    conn.close()


def test_read_transactions_filters(tmp_path: Path) -> None:
    """app, name_glob and since_seconds select blocks as report does."""
    conn = store.connect(str(tmp_path / "t.db"))
    old = time.time() - 7200
    store.write_batches(conn, [_batch(_record(1.0, app="a", name="jobs:one"))])
    store.write_batches(conn, [_batch(_record(2.0, app="b", name="jobs:two"))])
    store.write_batches(
        conn,
        [
            _batch(_record(3.0, app="a", name="cron:old", start=old))._replace(
                window_start=old - 5, window_end=old
            )
        ],
    )
    assert [r.name for r in _read(conn, app="a")] == ["jobs:one", "cron:old"]
    assert [r.name for r in _read(conn, name_glob="jobs:*")] == ["jobs:one", "jobs:two"]
    assert [r.name for r in _read(conn, since_seconds=3600)] == ["jobs:one", "jobs:two"]
    assert store.durations_by_key(conn) == {
        ("a", "Function", "jobs:one"): [1.0],
        ("b", "Function", "jobs:two"): [2.0],
        ("a", "Function", "cron:old"): [3.0],
    }
    assert store.durations_by_key(conn, app="a", since_seconds=3600) == {
        ("a", "Function", "jobs:one"): [1.0]
    }
    conn.close()


def test_durations_by_key_are_sorted_across_blocks(tmp_path: Path) -> None:
    """Durations of one key from several blocks come back merged and ascending."""
    conn = store.connect(str(tmp_path / "t.db"))
    store.write_batches(conn, [_batch(_record(3.0), _record(1.0))])
    store.write_batches(conn, [_batch(_record(2.0), _record(0.5))])
    assert store.durations_by_key(conn) == {("app", "Function", "jobs:run"): [0.5, 1.0, 2.0, 3.0]}
    conn.close()


def test_report_rows_contract_and_percentiles(tmp_path: Path) -> None:
    """report_rows returns the contract keys, exact metrics and nearest-rank percentiles
    (from the windows' histograms: within their relative error)."""
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
    assert first["p50_ms"] == pytest.approx(50.0, rel=MAX_RELATIVE_ERROR * (1 + 1e-9))
    assert first["p95_ms"] == pytest.approx(95.0, rel=MAX_RELATIVE_ERROR * (1 + 1e-9))
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


def test_metrics_without_rows_or_histogram_have_no_percentiles(tmp_path: Path) -> None:
    """A key whose rows were all dropped and whose windows have no histogram still reports
    exact calls, with p50/p95 None."""
    path = str(tmp_path / "t.db")
    conn = store.connect(path)
    batch = _batch(_record(2.0))._replace(records=())
    metrics = {key: stats._replace(histogram=None) for key, stats in batch.metrics.items()}
    store.write_batches(conn, [batch._replace(metrics=metrics)])
    conn.close()
    (row,) = store.report_rows(path)
    assert row["calls"] == 1 and row["p50_ms"] is None and row["max_ms"] == 2000.0


def test_metrics_without_rows_have_percentiles_from_their_histogram(tmp_path: Path) -> None:
    """A key whose rows were all dropped reports p50/p95 from its windows' histograms."""
    path = str(tmp_path / "t.db")
    conn = store.connect(path)
    batch = _batch(_record(2.0), _record(1.0), _record(3.0))._replace(records=())
    store.write_batches(conn, [batch])
    conn.close()
    (row,) = store.report_rows(path)
    assert row["calls"] == 3 and row["max_ms"] == 3000.0
    assert row["p50_ms"] == pytest.approx(2000.0, rel=MAX_RELATIVE_ERROR * (1 + 1e-9))
    assert row["p95_ms"] == 3000.0  # (its bucket's value, clamped to the exact max)


def _v1_store(path: str, batches: Sequence[Batch]) -> None:
    """A version-1 store holding ``batches``, as version 1's write_batches stored them."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(store._V1)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    for batch in batches:
        for r in batch.records:
            last = r.errors[-1] if r.errors else None
            tx_id = conn.execute(
                "INSERT INTO transactions (app, name, grp, background, start, duration, "
                "exclusive, cpu_time, pid, thread_id, trace_id, span_id, error_type, "
                "error_message, attributes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r.app,
                    r.name,
                    r.group,
                    int(r.background),
                    r.start,
                    r.duration,
                    r.exclusive,
                    r.cpu_time,
                    r.pid,
                    r.thread_id,
                    r.trace_id_hex,
                    r.span_id_hex,
                    None if last is None else last.type,
                    None if last is None else last.message,
                    json.dumps(dict(r.attributes)) if r.attributes else None,
                ),
            ).lastrowid
            conn.executemany(
                "INSERT INTO segments VALUES (?,?,?,?,?,?,?)",
                [
                    (tx_id, i, s.name, s.group, s.start, s.duration, s.parent)
                    for i, s in enumerate(r.segments)
                ],
            )
            conn.executemany(
                "INSERT INTO errors VALUES (?,?,?,?,?)",
                [(tx_id, e.type, e.message, e.traceback, e.timestamp) for e in r.errors],
            )
        conn.executemany(
            "INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (k.app, k.name, k.group, batch.window_start, batch.window_end, *m[:6])
                for k, m in batch.metrics.items()
            ],
        )
    conn.close()


def _v1_batches() -> Tuple[Batch, Batch, Batch]:
    """An old harvest, a recent one, and records whose metrics are missing; each batch's
    records end within its window, and keep only what version 1 stored."""
    now = time.time()
    records = [
        r._replace(dropped_segments=0, thread_id=r.thread_id % 2**63) for r in _varied_records()
    ]

    def batch(part: List[TransactionRecord], window_end: float, metrics: bool) -> Batch:
        timed = tuple(
            r._replace(start=window_end - r.duration - 0.001 * (i + 1)) for i, r in enumerate(part)
        )
        return Batch(
            timed,
            aggregate(timed) if metrics else {},
            window_end - 5,
            window_end,
            (),
            os.getpid(),
        )

    return (
        batch(records[:15], now - 7200, True),
        batch(records[15:35], now - 1, True),
        batch([r._replace(app="orphan") for r in records[35:]], now - 1, False),
    )


def test_version_1_file_is_migrated(tmp_path: Path) -> None:
    """A version-1 file is packed into blocks when opened: records, windows and report
    survive, and the version-1 tables are gone."""
    path = str(tmp_path / "v1.db")
    old, recent, orphans = _v1_batches()
    _v1_store(path, [old, recent, orphans])
    conn = store.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [
        (store.SCHEMA_VERSION,)
    ]
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert not names & {
        "transactions",
        "segments",
        "errors_v1",
        "transactions_by_key",
        "errors_by_transaction",
    }
    assert {"transaction_blocks", "segment_blocks", "errors", "errors_by_block"} <= names
    written = old.records + recent.records + orphans.records
    _assert_same(_by_trace_id(_read(conn)), _by_trace_id(written))
    # Each row went to the metrics window of its harvest; rows without one, to the span of
    # their own times.
    windows = dict(
        conn.execute("SELECT DISTINCT app, window_end FROM transaction_blocks WHERE app = 'orphan'")
    )
    assert windows == {"orphan": max(r.start + r.duration for r in orphans.records)}
    migrated = {
        (start, end)
        for start, end in conn.execute(
            "SELECT window_start, window_end FROM transaction_blocks WHERE app != 'orphan'"
        )
    }
    assert migrated == {
        (old.window_start, old.window_end),
        (recent.window_start, recent.window_end),
    }
    conn.close()
    # report --since cuts the migrated rows where it cuts their metrics: the old harvest
    # is out of both.
    recent_durations: Dict[Tuple[str, str, str], List[float]] = {}
    for r in recent.records:
        recent_durations.setdefault((r.app, r.group, r.name), []).append(r.duration)
    rows = store.report_rows(path, since_seconds=3600)
    assert {(r["app"], r["group"], r["name"]) for r in rows} == set(recent_durations)
    for row in rows:
        durations = sorted(recent_durations[(row["app"], row["group"], row["name"])])
        assert row["calls"] == len(durations)
        assert row["p50_ms"] == 1000 * durations[math.ceil(0.50 * len(durations)) - 1]
        assert row["p95_ms"] == 1000 * durations[math.ceil(0.95 * len(durations)) - 1]


def test_reading_a_version_1_file_migrates_it(tmp_path: Path) -> None:
    """report on a file no new writer has opened yet upgrades it first, then reads it."""
    path = str(tmp_path / "v1.db")
    old, recent, _ = _v1_batches()
    _v1_store(path, [old, recent])
    assert store.has_data(path)
    rows = store.report_rows(path)
    assert sum(r["calls"] for r in rows) == len(old.records) + len(recent.records)
    assert all(r["p50_ms"] is not None for r in rows)
    conn = store.connect(path, readonly=True)
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (store.SCHEMA_VERSION,)
    conn.close()


def test_version_1_file_is_migrated_once_by_concurrent_openers(tmp_path: Path) -> None:
    """Connections opening a version-1 file at once migrate it exactly once."""
    path = str(tmp_path / "v1.db")
    old, recent, orphans = _v1_batches()
    _v1_store(path, [old, recent, orphans])
    start = threading.Barrier(6)
    errors: List[BaseException] = []

    def opener() -> None:
        try:
            start.wait()
            store.connect(path).close()
        except BaseException as exc:  # pragma: no cover - the failure we test against  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    conn = store.connect(path, readonly=True)
    got = _read(conn)
    conn.close()
    written = old.records + recent.records + orphans.records
    assert sorted(r.trace_id for r in got) == sorted(r.trace_id for r in written)


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


def test_new_store_is_private(tmp_path: Path) -> None:
    """A new store is 0600 (with its -wal and -shm) in directories created 0700; the
    umask is left alone and an existing directory keeps its mode."""
    import stat

    os.chmod(tmp_path, 0o755)
    old = os.umask(0o022)
    try:
        path = tmp_path / "a" / "b" / "t.db"
        conn = store.connect(str(path))
        conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")  # make SQLite write the WAL
        assert os.umask(0o022) == 0o022
        for name in ("t.db", "t.db-wal", "t.db-shm"):
            assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600, name
        conn.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755


def test_existing_store_keeps_its_mode(tmp_path: Path) -> None:
    """A store file the user created keeps the mode they gave it."""
    import stat

    path = tmp_path / "mine.db"
    path.touch()
    os.chmod(path, 0o640)
    store.connect(str(path)).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_version_2_file_is_migrated_in_place(tmp_path: Path) -> None:
    """A version-2 file (no histograms) gains the histogram column when first opened; its
    rows and windows stay, its report keeps the stored-row percentiles, and new windows
    are written with histograms."""
    from tasktrace.store._packing import _Blocks
    from tasktrace.store._schema import _migrate_1_to_2

    path = str(tmp_path / "v2.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(store._V1)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    _migrate_1_to_2(conn)
    conn.execute("INSERT INTO schema_version VALUES (2)")
    old = _batch(*[_record(d / 1000) for d in range(1, 101)])
    blocks = _Blocks(1, version=2)
    blocks.add(old.records, old.window_start, old.window_end)
    blocks.insert(conn)
    for key, stats in old.metrics.items():
        conn.execute(
            "INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (key.app, key.name, key.group, old.window_start, old.window_end, *stats[:6]),
        )
    conn.close()
    (before,) = store.report_rows(path)  # (a reader migrates it first, as a writer would)
    conn = store.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [
        (store.SCHEMA_VERSION,)
    ]
    assert conn.execute("SELECT histogram FROM metrics").fetchall() == [(None,)]
    assert [r.trace_id for r in _read(conn)] == [r.trace_id for r in old.records]
    assert before["p50_ms"] == pytest.approx(50.0) and before["p95_ms"] == pytest.approx(95.0)
    store.write_batches(conn, [_batch(_record(0.5))])
    assert conn.execute("SELECT COUNT(histogram) FROM metrics").fetchone() == (1,)
    conn.close()
    (after,) = store.report_rows(path)
    assert after["calls"] == 101


def test_parent_span_ids_host_and_max_duration_are_stored(tmp_path: Path) -> None:
    """parent_span_id reads back per transaction (None kept None, the column NULL when no
    transaction has one); each block keeps the writer's hostname and its longest duration."""
    import socket

    mixed = [_record(0.5)._replace(parent_span_id=0xFEED), _record(0.25), _record(2.0)]
    roots = [_record(1.0, name="jobs:other")]
    conn = store.connect(str(tmp_path / "t.db"))
    store.write_batches(conn, [_batch(*mixed, *roots)])
    rows = conn.execute(
        "SELECT name, max_duration, host, parent_span_id IS NULL FROM transaction_blocks "
        "ORDER BY id"
    ).fetchall()
    assert rows == [
        ("jobs:run", 2.0, socket.gethostname(), 0),
        ("jobs:other", 1.0, socket.gethostname(), 1),
    ]
    got = _read(conn)
    assert [r.parent_span_id for r in got] == [0xFEED, None, None, None]
    assert got[0].parent_span_id_hex == f"{0xFEED:016x}"
    _assert_same(got, mixed + roots)
    conn.close()


def test_trace_index_holds_every_trace_id_prefix_in_capped_rows(tmp_path: Path) -> None:
    """trace_index has the first 4 bytes of every stored trace id, in block order; small
    harvests append to the newest row until it is full, then a new row begins."""
    from tasktrace.store._packing import TRACE_INDEX_ROW_BYTES

    conn = store.connect(str(tmp_path / "t.db"))
    per_harvest = 1000
    harvests = TRACE_INDEX_ROW_BYTES // (4 * per_harvest) + 2
    ids = []
    for h in range(harvests):
        records = [
            _record(0.1)._replace(trace_id=(h * per_harvest + i + 1) << 96 | 7)
            for i in range(per_harvest)
        ]
        ids += [r.trace_id for r in records]
        store.write_batches(conn, [_batch(*records)])
    rows = conn.execute(
        "SELECT first_block, last_block, prefixes FROM trace_index ORDER BY first_block"
    ).fetchall()
    assert len(rows) == 2
    assert all(len(prefixes) <= TRACE_INDEX_ROW_BYTES for _, _, prefixes in rows)
    assert rows[0][0] == 1 and rows[1][0] == rows[0][1] + 1 and rows[1][1] == harvests
    assert b"".join(p for _, _, p in rows) == b"".join((i >> 96).to_bytes(4, "big") for i in ids)
    conn.close()
