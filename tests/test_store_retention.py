"""Tests for tasktrace.store._retention: retention with an injected clock, exact roll-ups,
the size limit (oldest detail first, counts last), and space given back."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tasktrace import store
from tasktrace.recorder import aggregate
from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch, DropCount

DAY = 86400.0
T0 = 1_800_000_000.0  # a fixed epoch: every test injects its own clock


def _record(
    start: float, duration: float, name: str = "jobs:run", error: bool = False
) -> TransactionRecord:
    return TransactionRecord(
        app="app",
        name=name,
        group="Function",
        background=True,
        start=start,
        duration=duration,
        exclusive=duration / 2,
        cpu_time=None,
        pid=os.getpid(),
        thread_id=1,
        errors=(ErrorRecord("ValueError", "bad", "Traceback...", start),) if error else (),
        attributes={},
        segments=(SegmentRecord("db:query", "Function", 0.0, duration / 2, -1),),
        trace_id=int(start * 1000) or 1,
        span_id=7,
    )


def _batch(end: float, records: Tuple[TransactionRecord, ...], window: float = 5.0) -> Batch:
    return Batch(
        records=records,
        metrics=aggregate(records),
        window_start=end - window,
        window_end=end,
        drops=(DropCount("app", "buffer_full", 1),),
        pid=os.getpid(),
    )


def _write_history(conn: sqlite3.Connection, ends: List[float], per_window: int = 3) -> int:
    """One batch per window end, each with ``per_window`` transactions of two names."""
    written = 0
    for i, end in enumerate(ends):
        records = tuple(
            _record(
                end - 4 + j * 0.1, 0.01 * (j + 1), name=f"jobs:n{j % 2}", error=(i + j) % 7 == 0
            )
            for j in range(per_window)
        )
        store.write_batches(conn, [_batch(end, records)])
        written += len(records)
    return written


def _digits(value: float) -> float:
    return float(f"{value:.12g}")


def _totals(
    conn: sqlite3.Connection,
) -> Dict[Tuple[str, str, str], Tuple[int, int, float, float, float, float]]:
    rows = conn.execute(
        "SELECT app, name, grp, SUM(count), SUM(errors), SUM(total), MIN(min), MAX(max), "
        "SUM(sumsq) FROM metrics GROUP BY app, name, grp"
    ).fetchall()
    return {
        # Sums of floats in another order differ in their last bits: 12 significant digits.
        tuple(row[:3]): (row[3], row[4], _digits(row[5]), row[6], row[7], _digits(row[8]))
        for row in rows
    }


@pytest.fixture
def conn(tmp_path: Path):  # type: ignore[no-untyped-def]
    connection = store.connect(str(tmp_path / "t.db"))
    yield connection
    connection.close()


def test_retention_deletes_what_ended_before_it_and_keeps_the_rest(
    conn: sqlite3.Connection,
) -> None:
    """Blocks (with their segments and errors), metrics windows and drops older than the
    retention go; everything younger stays, its counts untouched."""
    old = [T0 + i * 5 for i in range(50)]
    recent = [T0 + 8 * DAY + i * 5 for i in range(20)]
    _write_history(conn, old + recent)
    report = store.prune(conn, retention=7 * DAY, max_size=1 << 40, now=T0 + 8 * DAY + 200)
    assert report.blocks == 100 and report.transactions == 150  # 2 names per window
    assert report.windows == 100 and report.early_transactions == 0
    assert conn.execute("SELECT MIN(window_end) FROM transaction_blocks").fetchone()[0] >= recent[0]
    assert conn.execute("SELECT MIN(window_end) FROM metrics").fetchone()[0] >= recent[0]
    assert conn.execute("SELECT MIN(time) FROM drops").fetchone()[0] >= recent[0] - 10
    live = {row[0] for row in conn.execute("SELECT id FROM transaction_blocks")}
    assert {row[0] for row in conn.execute("SELECT block_id FROM segment_blocks")} <= live
    assert {row[0] for row in conn.execute("SELECT block_id FROM errors")} <= live
    assert sum(r[0] for r in conn.execute("SELECT count FROM metrics")) == 60
    again = store.prune(conn, retention=7 * DAY, max_size=1 << 40, now=T0 + 8 * DAY + 200)
    assert again.transactions == again.windows == 0


def test_roll_ups_keep_counts_exact_and_align_windows(conn: sqlite3.Connection) -> None:
    """Harvest windows older than 15 minutes become one row per task and minute, minute
    rows older than 6 hours one per hour; every count, error, total, min, max and sum of squares
    is the same before and after."""
    ends = [T0 + i * 5 for i in range(0, 9 * 720)]  # 9 hours of 5-second windows
    ends += [T0 + 8 * DAY + i * 5 for i in range(0, 2 * 720)]  # and two hours, 8 days later
    _write_history(conn, ends, per_window=2)
    before = _totals(conn)
    rows_before = conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    now = T0 + 8 * DAY + 2 * 3600 + 1800  # the first 9 hours are 8 days old, the last two
    # 30 minutes to 2.5 hours
    report = store.prune(conn, retention=30 * DAY, max_size=1 << 40, now=now, step_rows=500)
    assert report.rolled_up > 0 and report.windows == 0
    assert _totals(conn) == before
    rows = conn.execute("SELECT window_start, window_end FROM metrics").fetchall()
    assert len(rows) < rows_before / 50
    for start, end in rows:
        assert end - start in (60.0, 3600.0)
        assert start % (end - start) == 0
    hours = [r for r in rows if r[1] - r[0] == 3600.0]
    minutes = [r for r in rows if r[1] - r[0] == 60.0]
    assert hours and max(end for _, end in hours) <= T0 + 10 * 3600  # only the old part
    assert minutes and min(start for start, _ in minutes) >= T0 + 8 * DAY - 60  # the new


def test_roll_ups_merge_the_histograms_exactly(conn: sqlite3.Connection) -> None:
    """Rolled-up windows carry the merge of their windows' histograms: the histogram of
    every call is bucket for bucket the same before and after, and so is report."""
    from tasktrace.histogram import merge_encoded

    _write_history(conn, [T0 + i * 5 for i in range(0, 720)], per_window=4)  # an hour

    def histograms() -> Dict[str, object]:
        rows = conn.execute("SELECT name, histogram FROM metrics ORDER BY name").fetchall()
        return {name: merge_encoded(b for n, b in rows if n == name) for name, _ in rows}

    before = histograms()
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    report_before = store.report_rows(path, now=T0 + 2 * DAY)
    store.prune(conn, retention=30 * DAY, max_size=1 << 40, now=T0 + 2 * DAY, step_rows=500)
    assert conn.execute(
        "SELECT COUNT(*) FROM metrics WHERE window_end - window_start < 59.5"
    ).fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM metrics WHERE histogram IS NULL").fetchone() == (0,)
    assert histograms() == before
    after = store.report_rows(path, now=T0 + 2 * DAY)
    exact_keys = ("name", "calls", "errors", "p50_ms", "p95_ms", "max_ms")
    assert [[r[k] for k in exact_keys] for r in after] == [
        [r[k] for k in exact_keys] for r in report_before
    ]


def test_a_window_without_histogram_makes_its_roll_up_have_none() -> None:
    """A minute merged from windows one of which has no histogram (written before schema
    3) has none either: a histogram of only some of its calls is not guessed at."""
    from tasktrace.histogram import Histogram
    from tasktrace.store._retention import _merged_rows

    blob = Histogram.of([0.1, 0.2]).to_bytes()
    t = T0 + 100  # (inside one hour)
    rows = [
        ("app", "a", "F", t - 5, t, 2, 0, 0.3, 0.1, 0.2, 0.05, blob),
        ("app", "a", "F", t, t + 5, 1, 0, 0.1, 0.1, 0.1, 0.01, None),
        ("app", "b", "F", t, t + 5, 2, 0, 0.3, 0.1, 0.2, 0.05, blob),
        ("app", "b", "F", t + 5, t + 10, 2, 0, 0.3, 0.1, 0.2, 0.05, blob),
    ]
    merged = {row[1]: row for row in _merged_rows(rows, 3600)}
    assert merged["a"][5] == 3 and merged["a"][11] is None
    assert Histogram.from_bytes(merged["b"][11]) == Histogram.of([0.1, 0.2, 0.1, 0.2])


def test_a_time_budget_leaves_the_rest_for_the_next_prune(conn: sqlite3.Connection) -> None:
    """With no time to spare, prune takes one step and says it is unfinished; the next
    one goes on."""
    _write_history(conn, [T0 + i * 5 for i in range(30)])
    first = store.prune(
        conn, retention=1.0, max_size=1 << 40, now=T0 + DAY, budget=0.0, step_rows=10
    )
    assert first.unfinished and first.blocks == 10  # one step, however small the budget
    rest = store.prune(conn, retention=1.0, max_size=1 << 40, now=T0 + DAY)
    assert not rest.unfinished and rest.blocks == 50


def test_max_size_removes_the_oldest_detail_first_and_counts_last(conn: sqlite3.Connection) -> None:
    """Over max_size, whole blocks go oldest first and are counted as early; the metrics
    stay (rolled up before their time if need be), so every call is still counted."""
    _write_history(conn, [T0 + i * 5 for i in range(100)], per_window=400)
    before = _totals(conn)
    limit = store._retention.used_bytes(conn) // 3
    report = store.prune(conn, retention=30 * DAY, max_size=limit, now=T0 + 3000, step_rows=10)
    assert store._retention.used_bytes(conn) <= limit
    assert report.early_transactions == report.transactions > 0
    assert report.early_calls == 0
    assert _totals(conn) == before
    ids = [row[0] for row in conn.execute("SELECT id FROM transaction_blocks ORDER BY id")]
    assert ids and ids[0] > report.blocks  # the oldest went


def test_max_size_rolls_up_then_drops_windows_only_when_nothing_else_is_left(
    conn: sqlite3.Connection,
) -> None:
    """With no detail left, fine windows are rolled up early (counts kept); only then do
    the oldest windows go, counted as early calls."""
    _write_history(conn, [T0 + i * 5 for i in range(2000)], per_window=1)
    before = _totals(conn)
    conn.execute("DELETE FROM transaction_blocks")
    conn.execute("DELETE FROM segment_blocks")
    conn.execute("DELETE FROM errors")
    conn.execute("DELETE FROM drops")
    used = store._retention.used_bytes(conn)
    rolled = store.prune(conn, retention=30 * DAY, max_size=used - 1, now=T0 + 10_000)
    assert rolled.rolled_up > 0 and rolled.early_calls == 0
    assert _totals(conn) == before
    tiny = store.prune(conn, retention=30 * DAY, max_size=1, now=T0 + 10_000)
    assert tiny.early_calls > 0 and tiny.windows > 0


def test_a_new_store_gives_space_back(tmp_path: Path) -> None:
    """A store made by this version is incremental-vacuum: pruning shrinks its file."""
    path = str(tmp_path / "s.db")
    conn = store.connect(path)
    try:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        _write_history(conn, [T0 + i * 5 for i in range(300)], per_window=50)
        big = store.file_bytes(conn)
        report = store.prune(conn, retention=1.0, max_size=1 << 40, now=T0 + DAY)
        assert report.bytes_reclaimed > big / 2
        assert store.file_bytes(conn) < big / 2
    finally:
        conn.close()


def test_an_older_store_is_converted_once(tmp_path: Path) -> None:
    """A store without incremental auto-vacuum (made by an older tasktrace) is converted
    by vacuum_into_incremental, which gives back its free pages."""
    path = str(tmp_path / "old.db")
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA auto_vacuum = NONE")
    raw.close()
    conn = store.connect(path)
    try:
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        _write_history(conn, [T0 + i * 5 for i in range(200)], per_window=50)
        store.prune(conn, retention=1.0, max_size=1 << 40, now=T0 + DAY)
        assert store._retention.used_bytes(conn) < store.file_bytes(conn) / 2
        assert store.vacuum_into_incremental(conn) > 0
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    finally:
        conn.close()


def test_retention_drops_the_trace_index_of_deleted_blocks(tmp_path: Path) -> None:
    """Once the blocks of a trace_index row are deleted, so is the row; the trace ids of
    the blocks kept are still found, those deleted are not."""
    conn = store.connect(str(tmp_path / "t.db"))
    old = _record(T0 - 10 * DAY, 0.5)._replace(trace_id=0xAAAAAAAA << 96)
    new = _record(T0 - 60, 0.5)._replace(trace_id=0xBBBBBBBB << 96)
    store.write_batches(conn, [_batch(T0 - 10 * DAY + 5, (old,))])
    # A row of its own for the new block: the old row is full.
    conn.execute("UPDATE trace_index SET prefixes = ?", (bytes(16380) + b"\xaa" * 4,))
    store.write_batches(conn, [_batch(T0 - 55, (new,))])
    assert conn.execute("SELECT COUNT(*) FROM trace_index").fetchone() == (2,)
    store.prune(conn, retention=7 * DAY, max_size=1 << 30, now=T0)
    assert conn.execute("SELECT first_block, last_block FROM trace_index").fetchall() == [(2, 2)]
    assert store.find_trace(conn, "bbbbbbbb")["trace_id"] == new.trace_id_hex
    with pytest.raises(store.TraceLookupError, match="no stored trace"):
        store.find_trace(conn, "aaaaaaaa")
    conn.close()
