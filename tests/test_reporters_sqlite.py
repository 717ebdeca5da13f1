"""Tests for tasktrace.reporters.sqlite: writes, locked database, kept batches, fork."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from tasktrace import store
from tasktrace.histogram import MAX_RELATIVE_ERROR
from tasktrace.recorder import aggregate
from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch, DropCount
from tasktrace.reporters.sqlite import SqliteReporter


def _batch(n: int, budget: float = 0.2) -> Batch:
    records = tuple(
        TransactionRecord(
            "app",
            "jobs:run",
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
            i + 1,
            i + 1,
        )
        for i in range(n)
    )
    return Batch(
        records,
        aggregate(records),
        time.time() - 1,
        time.time(),
        (DropCount("app", "buffer_full", 1),),
        os.getpid(),
        deadline=time.monotonic() + budget,
    )


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _count(path: str, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def _stored(path: str) -> int:
    """Transactions stored in the blocks."""
    conn = sqlite3.connect(path)
    try:
        return int(
            conn.execute("SELECT COALESCE(SUM(count), 0) FROM transaction_blocks").fetchone()[0]
        )
    finally:
        conn.close()


def test_export_writes(tmp_path: Path) -> None:
    """An export writes records, metrics and drops."""
    path = str(tmp_path / "t.db")
    reporter = SqliteReporter(path=path)
    assert reporter.export(_batch(3)).exported == 3
    reporter.shutdown(1.0)
    assert (_stored(path), _count(path, "metrics"), _count(path, "drops")) == (
        3,
        1,
        1,
    )


def test_locked_database_keeps_batch_for_next_harvest(tmp_path: Path) -> None:
    """A database locked past the budget keeps the batch; the next export writes both.
    With windows of 0 s, each harvest's rows are written with it, not held for a slot."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    reporter = SqliteReporter(path=path, window_seconds=0)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    result = reporter.export(_batch(2, budget=0.2))
    # It waited for the other writer for its whole budget before keeping the batch.
    assert 0.15 <= time.monotonic() - started < 2.0
    assert not result.success and result.retryable and result.dropped == 0
    assert "locked" in result.message
    blocker.execute("ROLLBACK")
    blocker.close()
    assert reporter.export(_batch(3)).exported == 5
    assert _stored(path) == 5
    reporter.shutdown(1.0)


def test_kept_batches_are_bounded(tmp_path: Path) -> None:
    """Kept rows beyond the bound are let go (written as drops); their metrics are still
    written, so no transaction is lost: all of them stay kept, then are exported.
    With windows of 0 s, each harvest's rows are written with it, not held for a slot."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    reporter = SqliteReporter(path=path, max_kept=4, window_seconds=0)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    first = reporter.export(_batch(3, budget=0.05))
    assert (first.dropped, first.kept, first.reason) == (0, 3, "locked")
    second = reporter.export(_batch(3, budget=0.05))
    assert (second.dropped, second.kept) == (0, 6)
    blocker.execute("ROLLBACK")
    blocker.close()
    flushed = reporter.force_flush(1.0)
    assert flushed and (flushed.exported, flushed.kept) == (6, 0)
    assert _stored(path) == 3
    assert _count(path, "metrics") == 2
    assert store.drop_totals(path).get("sqlite:kept_full") == 3
    reporter.shutdown(1.0)


def test_kept_metrics_are_merged_to_bound_memory(tmp_path: Path) -> None:
    """Many harvests kept while the store is locked cost one metrics batch, not one per
    harvest; the calls they stand for are all written once the lock is gone."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    reporter = SqliteReporter(path=path, max_kept=2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    for _ in range(50):
        result = reporter.export(_batch(3, budget=0.01))
    assert (result.kept, result.dropped) == (150, 0)
    assert len(reporter._kept) <= 2
    blocker.execute("ROLLBACK")
    blocker.close()
    assert reporter.force_flush(1.0).exported == 150
    (row,) = store.report_rows(path)
    assert row["calls"] == 150
    reporter.shutdown(1.0)


def test_shutdown_says_what_stays_locked(tmp_path: Path) -> None:
    """A store still locked at shutdown: every kept transaction is given up on, and the
    result says how many and why (the recorder says it on stderr)."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    reporter = SqliteReporter(path=path, max_kept=2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        reporter.export(_batch(3, budget=0.01))
        reporter.export(_batch(4, budget=0.01))
        result = reporter.shutdown(0.05)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result is not None and not result
    assert (result.exported, result.dropped, result.reason) == (0, 7, "locked")
    assert reporter.export(_batch(1)).dropped == 1  # closed
    assert _stored(path) == 0


def test_sampled_rows_count_as_the_transactions_they_stand_for(tmp_path: Path) -> None:
    """Exports count transactions (the metrics' calls), not the sampled rows."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    clock = _Clock()
    reporter = SqliteReporter(path=path, max_rows_per_name=10, window_seconds=0, clock=clock)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    assert reporter.export(_batch(3000, budget=0.05)).kept == 3000
    blocker.execute("ROLLBACK")
    blocker.close()
    clock.now += 60.0  # a minute later: the budget has room for one more row
    assert reporter.export(_batch(1)).exported == 3001
    assert _stored(path) == 11
    reporter.shutdown(1.0)


def test_not_a_database_drops_with_message(tmp_path: Path) -> None:
    """A file that is not SQLite fails the export with a message naming it."""
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not a database" * 100)
    result = SqliteReporter(path=str(path)).export(_batch(1))
    assert not result.success and result.dropped == 1 and str(path) in result.message


def test_connection_is_reopened_after_fork(tmp_path: Path) -> None:
    """A connection inherited through fork is not reused by the child."""
    path = str(tmp_path / "t.db")
    reporter = SqliteReporter(path=path)
    reporter.export(_batch(1))
    parent_conn = reporter._conn
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            reporter.export(_batch(1))
            code = 0 if reporter._conn is not parent_conn else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert reporter._conn is parent_conn
    assert _stored(path) == 2
    reporter.shutdown(1.0)


def _named(name: str, n: int, error_every: int = 0) -> list[TransactionRecord]:
    from tasktrace.records import ErrorRecord

    base = _batch(n).records
    error = (ErrorRecord("builtins:ValueError", "bad", "", 0.0),)
    return [
        r._replace(name=name, errors=error if error_every and i % error_every == 0 else ())
        for i, r in enumerate(base)
    ]


def test_sampled_rows_keep_exact_metrics(tmp_path: Path) -> None:
    """With a row limit the metrics table still counts every call."""
    path = str(tmp_path / "s.db")
    reporter = SqliteReporter(path=path, max_rows_per_name=7)
    assert reporter.export(_batch(100)).success
    reporter.shutdown(1.0)
    assert _stored(path) == 7
    (row,) = store.report_rows(path)
    assert row["calls"] == 100


def test_no_row_limit_stores_every_transaction(tmp_path: Path) -> None:
    """max_rows_per_name=0 stores every transaction, and each reads back as exported."""
    path = str(tmp_path / "all.db")
    reporter = SqliteReporter(path=path, max_rows_per_name=0)
    batch = _batch(5000)
    assert reporter.export(batch).exported == 5000
    reporter.shutdown(1.0)
    conn = store.connect(path, readonly=True)
    try:
        assert list(store.read_transactions(conn)) == list(batch.records)
    finally:
        conn.close()


def test_refuses_to_write_into_a_foreign_database(tmp_path: Path) -> None:
    """Another program's SQLite file is left untouched; the failure names path and fix."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    result = SqliteReporter(path=str(path)).export(_batch(1))
    assert not result.success and result.dropped == 1
    assert f"{path} is a SQLite database but not a tasktrace store" in result.message
    assert "TASKTRACE_DB" in result.message
    conn = sqlite3.connect(str(path))
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert names == {"customers"}


def test_default_path_honours_xdg_data_home_like_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With XDG_DATA_HOME set, the reporter writes where `report` reads."""
    from tasktrace.admin import report
    from tasktrace.config import Settings

    monkeypatch.chdir(tmp_path)  # no tasktrace.toml or pyproject.toml here
    monkeypatch.delenv("TASKTRACE_DB", raising=False)
    monkeypatch.delenv("TASKTRACE_CONFIG_FILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = str(tmp_path / "data" / "tasktrace" / "tasktrace.db")
    assert SqliteReporter(Settings()).path == expected
    assert report._db_path(None) == expected


def test_a_closed_gate_refuses_the_commit(tmp_path: Path) -> None:
    """Once the recorder's exit warning has closed the gate, nothing more is written."""
    from tasktrace.reporters.base import CommitGate

    path = str(tmp_path / "t.db")
    reporter = SqliteReporter(path=path)
    gate = CommitGate()
    assert reporter.export(_batch(2)._replace(gate=gate)).exported == 2
    assert gate.close() == {"sqlite"}  # committed, and not settled by a recorder here
    result = reporter.export(_batch(3)._replace(gate=gate))
    assert not result and result.kept == 5 - 2
    assert _stored(path) == 2
    reporter._closed = True  # (shutdown would try again, and be refused again)


# -- the row budget, driven through the reporter with an injected clock ---------------------

#: The epoch second the fake monotonic clock's 0 stands for (windows are epoch seconds).
_EPOCH = 1_800_000_000.0


def _harvest(
    reporter: SqliteReporter,
    clock: _Clock,
    n: int,
    *,
    name: str = "busy",
    errors: int = 0,
    gap: float,
) -> Batch:
    """One harvest ``gap`` seconds after the previous one, of ``n`` records of ``name``
    started evenly over the gap (the first ``errors`` of them errored), exported."""
    from tasktrace.records import ErrorRecord

    error = (ErrorRecord("builtins:ValueError", "bad", "Traceback ...", 0.0),)
    begin = clock.now
    clock.now += gap
    base = _batch(1).records[0]
    records = tuple(
        base._replace(
            name=name,
            start=_EPOCH + begin + gap * i / n,
            errors=error if i < errors else (),
            trace_id=_next_id(),
            span_id=1,
        )
        for i in range(n)
    )
    batch = Batch(records, aggregate(records), _EPOCH + begin, _EPOCH + clock.now, (), os.getpid())
    assert reporter.export(batch).success
    return batch


_ids = iter(range(1, 1 << 62))


def _next_id() -> int:
    return next(_ids)


def _rows(path: str) -> list[TransactionRecord]:
    conn = store.connect(path, readonly=True)
    try:
        return list(store.read_transactions(conn))
    finally:
        conn.close()


def test_budget_holds_at_many_harvests_a_second(tmp_path: Path) -> None:
    """Ten harvests a second of 200 tasks each for three minutes: at most 600 rows a
    minute (after the first slot's full bucket), one block and one metrics row per 5 s
    slot, every call counted, and each slot's rows spread over its harvests."""
    path = str(tmp_path / "busy.db")
    clock = _Clock(0.0)
    reporter = SqliteReporter(path=path, clock=clock)
    for _ in range(10 * 180):
        _harvest(reporter, clock, 200, gap=0.1)
    reporter.force_flush(1.0)
    rows = _rows(path)
    # A minute's worth at once (the bucket starts full), then 10 a second.
    assert 1700 <= len(rows) <= 600 + 180 * 10
    for minute in (1, 2):
        since = _EPOCH + 60 * minute
        kept = [r for r in rows if since <= r.start < since + 60]
        assert 500 <= len(kept) <= 660, (minute, len(kept))
    (row,) = store.report_rows(path, now=_EPOCH + clock.now)
    assert row["calls"] == 10 * 180 * 200
    assert _count(path, "transaction_blocks") <= 180 / 5 + 2
    assert _count(path, "metrics") <= 180 / 5 + 2
    # Within a slot of 50 harvests, the sample comes from all of them: not the first.
    conn = store.connect(path, readonly=True)
    try:
        windows = conn.execute(
            "SELECT window_start, window_end FROM metrics ORDER BY window_start"
        ).fetchall()
    finally:
        conn.close()
    for start, end in windows[2:-1]:
        mine = sorted(r.start for r in rows if start <= r.start < end)
        assert len(mine) >= 30
        assert mine[-1] - mine[0] > 0.6 * (end - start)
        first_harvest = sum(1 for s in mine if s < start + 0.1)
        assert first_harvest <= len(mine) * 0.2
    reporter.shutdown(1.0)


def test_a_quiet_name_keeps_every_row(tmp_path: Path) -> None:
    """A task every two seconds for ten minutes, next to a busy name: every quiet row is
    kept (the busy one is sampled)."""
    path = str(tmp_path / "quiet.db")
    clock = _Clock(0.0)
    reporter = SqliteReporter(path=path, clock=clock)
    for _ in range(300):
        _harvest(reporter, clock, 1, name="quiet", gap=1.0)
        _harvest(reporter, clock, 500, name="busy", gap=1.0)
    reporter.shutdown(1.0)
    rows = _rows(path)
    assert sum(1 for r in rows if r.name == "quiet") == 300
    assert sum(1 for r in rows if r.name == "busy") <= 600 + 10 * 600


def test_rows_are_written_with_each_harvest_at_the_default_pace(tmp_path: Path) -> None:
    """Harvests every harvest_interval (5 s): each one's rows are written with it."""
    path = str(tmp_path / "pace.db")
    clock = _Clock(0.0)
    reporter = SqliteReporter(path=path, clock=clock)
    for i in range(1, 6):
        _harvest(reporter, clock, 20, gap=5.0)
        assert _stored(path) == 20 * i
    assert _count(path, "metrics") == 5  # (no window merged into the one before)
    reporter.shutdown(1.0)


def test_rows_held_by_the_budget_are_written_by_a_flush(tmp_path: Path) -> None:
    """Rows held in an open slot are written by force_flush (tasktrace.flush())."""
    path = str(tmp_path / "flush.db")
    clock = _Clock(0.0)
    reporter = SqliteReporter(path=path, clock=clock)
    _harvest(reporter, clock, 10, gap=5.0)
    _harvest(reporter, clock, 10, gap=0.1)
    _harvest(reporter, clock, 10, gap=0.1)
    assert _stored(path) == 10
    assert reporter.force_flush(1.0)
    assert _stored(path) == 30
    reporter.shutdown(1.0)


def test_an_error_storm_has_a_budget_of_its_own(tmp_path: Path) -> None:
    """Half the tasks fail, ten harvests a second for two minutes: errored rows stay
    within 60 a minute, errorless ones within 600, and every error is counted."""
    path = str(tmp_path / "storm.db")
    clock = _Clock(0.0)
    reporter = SqliteReporter(path=path, clock=clock)
    for _ in range(10 * 120):
        _harvest(reporter, clock, 200, errors=100, gap=0.1)
    reporter.shutdown(1.0)
    rows = _rows(path)
    errored = sum(1 for r in rows if r.errors)
    assert 120 <= errored <= 60 + 2 * 60
    assert 1200 <= len(rows) - errored <= 600 + 2 * 600
    (row,) = store.report_rows(path, now=_EPOCH + clock.now)
    assert (row["calls"], row["errors"]) == (240_000, 120_000)


def test_no_error_budget_keeps_every_errored_row(tmp_path: Path) -> None:
    """max_error_rows_per_name=0 keeps every errored row; the others stay budgeted."""
    path = str(tmp_path / "errors.db")
    clock = _Clock(0.0)
    reporter = SqliteReporter(path=path, clock=clock, max_error_rows_per_name=0)
    for _ in range(50):
        _harvest(reporter, clock, 100, errors=30, gap=0.1)
    reporter.shutdown(1.0)
    rows = _rows(path)
    assert sum(1 for r in rows if r.errors) == 50 * 30
    assert len(rows) - 50 * 30 <= 600 + 5 * 10


def test_report_percentiles_are_the_same_with_and_without_sampling(tmp_path: Path) -> None:
    """The same harvests stored with the default budget and with every row: report's
    calls, p50 and p95 are equal (they come from the histograms), and within 0.55% of the
    exact nearest-rank percentiles of all the calls."""
    rng = __import__("random").Random(3)
    durations = [rng.lognormvariate(-6, 1.0) for _ in range(40_000)]
    reports = []
    for limit, path in ((None, str(tmp_path / "sampled.db")), (0, str(tmp_path / "all.db"))):
        clock = _Clock(0.0)
        reporter = SqliteReporter(path=path, clock=clock, max_rows_per_name=limit)
        base = _batch(1).records[0]
        for chunk in range(0, len(durations), 400):
            begin = clock.now
            clock.now += 0.1
            records = tuple(
                base._replace(duration=d, exclusive=d) for d in durations[chunk : chunk + 400]
            )
            reporter.export(
                Batch(records, aggregate(records), _EPOCH + begin, _EPOCH + clock.now, (), 1)
            )
        reporter.shutdown(1.0)
        (row,) = store.report_rows(path, now=_EPOCH + clock.now)
        reports.append((row["calls"], row["p50_ms"], row["p95_ms"]))
    assert _stored(str(tmp_path / "sampled.db")) < 2000 < _stored(str(tmp_path / "all.db"))
    assert reports[0] == reports[1]
    ordered = sorted(durations)
    for estimate, pct in zip(reports[0][1:], (50, 95)):
        exact = store.percentile(ordered, pct)
        assert exact is not None
        assert estimate == pytest.approx(exact * 1000, rel=MAX_RELATIVE_ERROR * (1 + 1e-9))


def _old_batch(age: float) -> Batch:
    batch = _batch(4)
    end = time.time() - age
    return batch._replace(window_start=end - 5, window_end=end, deadline=None)


def test_a_harvest_prunes_what_is_past_retention(tmp_path: Path) -> None:
    """After a write, the reporter prunes in the background: data past ``retention``
    goes, the new batch stays; the next harvest within PRUNE_EVERY does not prune again."""
    from tasktrace.config import ReporterSettings, Settings

    path = str(tmp_path / "r.db")
    conn = store.connect(path)
    store.write_batches(conn, [_old_batch(3600), _old_batch(7200)])
    conn.close()
    settings = Settings(reporter=ReporterSettings(path=path, retention=600.0))
    # (Windows of 0 s: each harvest writes its own metrics row and its rows at once.)
    reporter = SqliteReporter(settings, window_seconds=0)
    assert reporter.export(_batch(3, budget=5.0)).success
    assert _count(path, "transaction_blocks") == 1
    assert _count(path, "metrics") == 1
    conn = store.connect(path)
    store.write_batches(conn, [_old_batch(3600)])
    conn.close()
    assert reporter.export(_batch(3, budget=5.0)).success
    assert _count(path, "metrics") == 3  # the old one waits for the next prune
    reporter.shutdown(1.0)


def test_no_prune_when_the_harvest_has_little_time(tmp_path: Path) -> None:
    """A harvest with under a second left (an exit) writes and does not prune."""
    from tasktrace.config import ReporterSettings, Settings

    path = str(tmp_path / "r.db")
    conn = store.connect(path)
    store.write_batches(conn, [_old_batch(3600)])
    conn.close()
    reporter = SqliteReporter(Settings(reporter=ReporterSettings(path=path, retention=600.0)))
    assert reporter.export(_batch(3, budget=0.5)).success
    assert _count(path, "metrics") == 2
    reporter.shutdown(1.0)


def test_max_size_below_the_floor_is_raised_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A max_size too small for one busy harvest is raised to 16 MiB, and said."""
    import logging

    from tasktrace.config import ReporterSettings, Settings
    from tasktrace.config._settings import MIN_MAX_SIZE

    settings = Settings(reporter=ReporterSettings(path=str(tmp_path / "r.db"), max_size=1000))
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        reporter = SqliteReporter(settings)
    assert reporter._max_size == MIN_MAX_SIZE
    assert any("max_size=1000 bytes is below" in r.getMessage() for r in caplog.records)


def test_removal_before_retention_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When max_size makes the reporter remove detail before its retention, one warning
    names the store, the limit and how much went; later prunes say nothing more."""
    import logging

    from tasktrace.config import ReporterSettings, Settings
    from tasktrace.reporters import sqlite as sqlite_reporter

    monkeypatch.setattr(sqlite_reporter, "MIN_MAX_SIZE", 1)
    monkeypatch.setattr(sqlite_reporter, "PRUNE_EVERY", 0.0)
    path = str(tmp_path / "r.db")
    settings = Settings(reporter=ReporterSettings(path=path, max_size=1))
    # (Windows of 0 s: each harvest writes its rows at once, not held for a slot.)
    reporter = SqliteReporter(settings, window_seconds=0)
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        for _ in range(3):
            assert reporter.export(_batch(50, budget=5.0)).success
    said = [r.getMessage() for r in caplog.records if "reached max_size" in r.getMessage()]
    assert len(said) == 1
    assert path in said[0] and "removed the detail of" in said[0]
    assert reporter._early_transactions >= 100
    reporter.shutdown(1.0)
