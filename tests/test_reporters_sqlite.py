"""Tests for tasktrace.reporters.sqlite: writes, locked database, kept batches, fork."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Tuple

import pytest

from tasktrace import store
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
    """A database locked past the budget keeps the batch; the next export writes both."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    reporter = SqliteReporter(path=path)
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
    written, so no transaction is lost: all of them stay kept, then are exported."""
    path = str(tmp_path / "t.db")
    store.connect(path).close()
    reporter = SqliteReporter(path=path, max_kept=4)
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
    reporter = SqliteReporter(path=path, max_rows_per_name=10)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    assert reporter.export(_batch(3000, budget=0.05)).kept == 3000
    blocker.execute("ROLLBACK")
    blocker.close()
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


def test_sample_rows_keeps_errors_and_bounds_each_name() -> None:
    """Per name: every errored record, then at most the limit of the others; order kept."""
    from tasktrace.reporters.sqlite import sample_rows

    busy = _named("busy", 500, error_every=50)  # 10 errors
    quiet = _named("quiet", 5)
    records = tuple(busy + quiet)
    kept = sample_rows(records, 20)
    busy_kept = [r for r in kept if r.name == "busy"]
    assert sum(1 for r in busy_kept if r.errors) == 10
    assert sum(1 for r in busy_kept if not r.errors) == 20
    assert [r for r in kept if r.name == "quiet"] == quiet
    assert list(kept) == [r for r in records if r in kept]  # original order
    assert sample_rows(tuple(quiet), 20) == tuple(quiet)  # under the limit: unchanged


@pytest.mark.parametrize("names", [("only",), ("one", "two", "three")])
def test_sample_rows_per_name_when_every_name_is_over(names: Tuple[str, ...]) -> None:
    """One name (the common case) or several, each over the limit: per name, its errored
    records and exactly the limit of the others, a different random choice each time."""
    from tasktrace.reporters.sqlite import sample_rows

    interleaved = [
        r for group in zip(*(_named(n, 300, error_every=30) for n in names)) for r in group
    ]
    records = tuple(interleaved)
    kept = sample_rows(records, 25)
    for name in names:
        mine = [r for r in kept if r.name == name]
        assert sum(1 for r in mine if r.errors) == 10
        assert sum(1 for r in mine if not r.errors) == 25
    assert list(kept) == [r for r in records if r in kept]  # original order
    assert any(sample_rows(records, 25) != kept for _ in range(5))  # chosen at random


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


@pytest.mark.parametrize(("total", "limit"), [(1001, 1000), (10, 3), (1_000_000, 7), (5, 4)])
def test_sample_positions_are_distinct_in_range_and_evenly_spread(total: int, limit: int) -> None:
    """The systematic sample: `limit` distinct positions in range, consecutive ones
    total/limit apart (rounded down or up), and every position reachable as the first."""
    from tasktrace.reporters.sqlite import _spread

    firsts = set()
    for _ in range(300):
        positions = list(_spread(total, limit))
        assert len(set(positions)) == limit
        assert positions[0] >= 0 and positions[-1] < total
        gaps = {b - a for a, b in zip(positions, positions[1:])}
        assert gaps <= {total // limit, -(-total // limit)}
        firsts.add(positions[0])
    assert firsts <= set(range(-(-total // limit)))
    if total >= 2 * limit:  # a random start, not always the same one
        assert len(firsts) > 1


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
    reporter = SqliteReporter(settings)
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
    reporter = SqliteReporter(settings)
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        for _ in range(3):
            assert reporter.export(_batch(50, budget=5.0)).success
    said = [r.getMessage() for r in caplog.records if "reached max_size" in r.getMessage()]
    assert len(said) == 1
    assert path in said[0] and "removed the detail of" in said[0]
    assert reporter._early_transactions >= 100
    reporter.shutdown(1.0)
