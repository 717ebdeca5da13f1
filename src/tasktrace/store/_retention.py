"""The store's lifetime: retention, roll-ups of aging metrics windows, the size limit, and
giving the space back.

:func:`prune` does all of it in small steps, each its own short ``BEGIN IMMEDIATE``
transaction, so that other processes' harvests wait for at most one step (a few
milliseconds) and never see "database is locked". In order:

1. **Retention.** Transaction blocks (with their segments and errors), metrics windows and
   drop rows whose window ended more than ``retention`` ago are deleted.
2. **Roll-ups.** Metrics windows are merged as they age: harvest windows (a few seconds
   each) older than :data:`MINUTE_AFTER` into one row per task and minute, minute rows
   older than :data:`HOUR_AFTER` into one per task and hour. Counts, errors, totals,
   minima, maxima and sums of squares merge exactly, and so do the latency histograms
   (bucket by bucket: ``report``'s percentiles stay within 0.55% however old), so
   ``report`` over a month is as exact in counts as over a minute; only the ``--since``
   cut gets coarser with age (to the minute after 15 minutes, to the hour after 6 hours).
3. **Size.** While the data holds more than ``max_size`` bytes, the oldest transaction
   detail goes first (whole blocks, oldest first); then fine windows are rolled up before
   their time, then minute windows; only when nothing else is left do the oldest rolled-up
   windows go, and with them counts. Whatever is removed before its retention is counted
   in the :class:`PruneReport` (the sqlite reporter says it once on stderr).
4. **Space.** A store created by this version uses ``auto_vacuum = INCREMENTAL``; freed
   pages are given back to the file system in small steps (``PRAGMA incremental_vacuum``).
   An older store reuses its freed pages (its file stops growing) until ``tasktrace-admin
   prune`` converts it once with a ``VACUUM``.

A window's tier is read from its length (``window_end - window_start``): under a minute is a
harvest window, a minute to under an hour a minute row; three partial indexes over
``window_end`` (one per tier, and one over all rows) keep each step's search short on a
store of months.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from tasktrace.histogram import merge_encoded

#: Harvest windows older than this (seconds) are rolled up into minutes.
MINUTE_AFTER = 900.0
#: Minute windows older than this are rolled up into hours. (Soon enough that a month of a
#: busy worker is about 1,250 windows per task, whose histograms ``report --since 30d``
#: merges in well under 300 ms for ten tasks: merging costs some 10 µs a window.)
HOUR_AFTER = 6 * 3600.0
#: How many blocks, or metrics rows, one step deletes or merges at most: a block holds up
#: to a harvest's transactions of one task (``MAX_BLOCK_SIZE``), so 50 is a few MB at most.
STEP_ROWS = 50
#: Metrics or drop rows per step, per block of ``step_rows``.
SMALL_ROWS_PER_BLOCK = 20

# The tiers, by window length; the same expressions appear in the partial indexes, which
# SQLite uses only for a query whose WHERE clause holds the index's own expression.
_FINE = "window_end - window_start < 59.5"
_MINUTE = "window_end - window_start >= 59.5 AND window_end - window_start < 3599.5"

#: Created by :func:`ensure_indexes` on every store a writer opens (idempotent).
INDEXES = (
    "CREATE INDEX IF NOT EXISTS metrics_by_end ON metrics (window_end)",
    f"CREATE INDEX IF NOT EXISTS metrics_fine_by_end ON metrics (window_end) WHERE {_FINE}",
    f"CREATE INDEX IF NOT EXISTS metrics_minute_by_end ON metrics (window_end) WHERE {_MINUTE}",
    "CREATE INDEX IF NOT EXISTS drops_by_time ON drops (time)",
)


class PruneReport(NamedTuple):
    """What one :func:`prune` removed."""

    #: Transactions whose detail (row, segments, errors) was deleted.
    transactions: int = 0
    #: Blocks of transactions deleted.
    blocks: int = 0
    #: Metrics windows deleted (past retention, or for size when nothing else was left).
    windows: int = 0
    #: Metrics windows merged into coarser ones (their counts kept exactly).
    rolled_up: int = 0
    #: Of ``transactions``, those removed before their retention, to keep under max_size.
    early_transactions: int = 0
    #: Calls counted in the windows deleted before their retention (counts lost).
    early_calls: int = 0
    #: Bytes the file gave back.
    bytes_reclaimed: int = 0
    #: The work was cut short by the time budget (the next prune goes on).
    unfinished: bool = False

    def plus(self, other: PruneReport) -> PruneReport:
        """Both reports' removals together."""
        values: List[Any] = [a + b for a, b in zip(self[:-1], other[:-1])]
        values.append(self.unfinished or other.unfinished)
        return PruneReport._make(values)


_NOTHING = PruneReport()


def ensure_indexes(conn: sqlite3.Connection) -> None:
    """Create the indexes pruning searches with, if the store lacks them."""
    for statement in INDEXES:
        conn.execute(statement)


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database in use: its pages less the free ones."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def file_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the database file (free pages included)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(conn.execute("PRAGMA page_count").fetchone()[0] * page_size)


def prune(
    conn: sqlite3.Connection,
    *,
    retention: float,
    max_size: int,
    now: Optional[float] = None,
    budget: Optional[float] = None,
    minute_after: float = MINUTE_AFTER,
    hour_after: float = HOUR_AFTER,
    step_rows: int = STEP_ROWS,
) -> PruneReport:
    """Apply retention, roll-ups and the size limit to the store ``conn``, in steps.

    Args:
        conn: a writable connection (autocommit, as :func:`~tasktrace.store.connect`
            makes it), outside any transaction.
        retention: seconds; data whose window ended before ``now - retention`` goes.
        max_size: bytes the data may hold.
        now: the time, epoch seconds (tests inject it); default ``time.time()``.
        budget: seconds of work at most, after the first step (which always runs, so
            that every call makes progress); None: until done (``tasktrace-admin
            prune``).
        minute_after: age in seconds past which harvest windows become minutes.
        hour_after: age past which minute windows become hours.
        step_rows: blocks or metrics rows per step.

    Returns:
        What was removed and merged.

    Raises:
        sqlite3.Error: a step failed (it is rolled back; the steps before it stay done).
    """
    now = time.time() if now is None else now
    stop_at = None if budget is None else time.monotonic() + budget
    ensure_indexes(conn)
    before = file_bytes(conn)
    report = PruneReport()
    cutoff = now - retention
    # Metrics and drop rows are small (about 100 bytes, where a block is up to megabytes):
    # a step takes more of them.
    small_rows = step_rows * SMALL_ROWS_PER_BLOCK
    steps: Tuple[Callable[[], Tuple[bool, PruneReport]], ...] = (
        lambda: _delete_old_blocks(conn, cutoff, step_rows),
        lambda: _delete_old_rows(conn, "metrics", "window_end", cutoff, small_rows),
        lambda: _delete_old_rows(conn, "drops", "time", cutoff, small_rows),
        # Lost tasks last seen before the cutoff (last_runs and schedules stay: a row per
        # task, which check needs for a monthly job whatever the retention).
        lambda: _delete_old_rows(conn, "running", "last_seen", cutoff, small_rows),
        lambda: _roll_up(conn, _FINE, 60, now - minute_after, small_rows),
        lambda: _roll_up(conn, _MINUTE, 3600, now - hour_after, small_rows),
    )
    # At least one step runs, whatever the budget, so that every call makes progress.
    stepped = False

    def out_of_time() -> bool:
        return stepped and stop_at is not None and time.monotonic() >= stop_at

    for step in steps:
        while True:
            if out_of_time():
                return report._replace(unfinished=True).plus(_vacuum(conn, before, stop_at))
            done, part = step()
            # (A step that found nothing to do does not count: the budget is for work.)
            stepped = stepped or part != _NOTHING
            report = report.plus(part)
            if done:
                break
    while used_bytes(conn) > max_size:
        if out_of_time():
            return report._replace(unfinished=True).plus(_vacuum(conn, before, stop_at))
        stepped = True
        room = _make_room(conn, now, step_rows)
        if room is None:
            break  # nothing left to remove: the schema alone is over the limit
        report = report.plus(room)
    return report.plus(_vacuum(conn, before, stop_at))


# -- steps: each one short write transaction; (done, what it removed) ----------------------


def _in_transaction(conn: sqlite3.Connection, work: Callable[[], PruneReport]) -> PruneReport:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def _delete_blocks(conn: sqlite3.Connection, ids: List[int]) -> None:
    marks = ",".join("?" * len(ids))
    conn.execute(f"DELETE FROM errors WHERE block_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM segment_blocks WHERE block_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM transaction_blocks WHERE id IN ({marks})", ids)
    # Blocks go oldest first (lowest ids), so an index row is of no use once its last
    # block precedes every block left (or none is left).
    conn.execute(
        "DELETE FROM trace_index WHERE last_block < "
        "COALESCE((SELECT MIN(id) FROM transaction_blocks), last_block + 1)"
    )


def _delete_old_blocks(
    conn: sqlite3.Connection, cutoff: float, step_rows: int
) -> Tuple[bool, PruneReport]:
    """The oldest blocks whose window ended before ``cutoff``. Blocks are numbered in the
    order they were written, so the oldest are the lowest ids."""

    def work() -> PruneReport:
        rows = conn.execute(
            "SELECT id, count FROM transaction_blocks WHERE window_end < ? ORDER BY id LIMIT ?",
            (cutoff, step_rows),
        ).fetchall()
        if rows:
            _delete_blocks(conn, [row[0] for row in rows])
        return PruneReport(transactions=sum(row[1] for row in rows), blocks=len(rows))

    part = _in_transaction(conn, work)
    return part.blocks < step_rows, part


def _delete_old_rows(
    conn: sqlite3.Connection, table: str, column: str, cutoff: float, step_rows: int
) -> Tuple[bool, PruneReport]:
    """The oldest rows of ``table`` (``metrics``, ``drops`` or ``running``) older than
    ``cutoff``."""
    removed = 0

    def work() -> PruneReport:
        nonlocal removed
        removed = conn.execute(
            f"DELETE FROM {table} WHERE rowid IN "
            f"(SELECT rowid FROM {table} WHERE {column} < ? ORDER BY {column} LIMIT ?)",
            (cutoff, step_rows),
        ).rowcount
        return PruneReport(windows=removed if table == "metrics" else 0)

    part = _in_transaction(conn, work)
    return removed < step_rows, part


#: A metrics row: app, name, grp, window_start, window_end, count, errors, total, min, max,
#: sumsq, histogram (the columns of the ``metrics`` table, in order).
_MetricRow = Tuple[
    str, str, str, float, float, int, int, float, float, float, float, Optional[bytes]
]


def _merged_rows(rows: List[Any], width: int) -> List[Tuple[Any, ...]]:
    """``rows`` (as :data:`_MetricRow`) merged per (app, name, group) and ``width``-second
    bucket of their end: counts, errors, totals and sums of squares added, min and max
    kept, histograms merged (:func:`~tasktrace.histogram.merge_encoded`). A merged window
    with a window that had no histogram (written before schema version 3) has none either:
    a histogram of only some of its calls would give wrong percentiles."""
    merged: Dict[Tuple[str, str, str, int], List[Any]] = {}
    for app, name, grp, _start, end, count, errors, total, low, high, sumsq, hist in rows:
        # A window ending exactly on a boundary belongs to the bucket it closes.
        bucket = int(-(-end // width)) - 1
        agg = merged.get((app, name, grp, bucket))
        if agg is None:
            merged[(app, name, grp, bucket)] = [
                count, errors, total, low, high, sumsq, None if hist is None else [hist]
            ]  # fmt: skip
        else:
            agg[0] += count
            agg[1] += errors
            agg[2] += total
            agg[3] = min(agg[3], low)
            agg[4] = max(agg[4], high)
            agg[5] += sumsq
            agg[6] = None if hist is None or agg[6] is None else [*agg[6], hist]
    result: List[Tuple[Any, ...]] = []
    for (app, name, grp, bucket), agg in merged.items():
        histogram = None if agg[6] is None else merge_encoded(agg[6])
        result.append(
            (
                app,
                name,
                grp,
                float(bucket * width),
                float((bucket + 1) * width),
                *agg[:6],
                None if histogram is None else histogram.to_bytes(),
            )
        )
    return result


def _roll_up(
    conn: sqlite3.Connection, tier: str, width: int, before: float, step_rows: int
) -> Tuple[bool, PruneReport]:
    """Merge up to ``step_rows`` of the oldest ``tier`` windows that ended before
    ``before`` into ``width``-second windows."""

    def work() -> PruneReport:
        rows = conn.execute(
            "SELECT rowid, app, name, grp, window_start, window_end, count, errors, total, "
            f"min, max, sumsq, histogram FROM metrics WHERE {tier} AND window_end < ? "
            "ORDER BY window_end LIMIT ?",
            (before, step_rows),
        ).fetchall()
        if not rows:
            return PruneReport()
        conn.executemany("DELETE FROM metrics WHERE rowid = ?", [(row[0],) for row in rows])
        merged = _merged_rows([row[1:] for row in rows], width)
        conn.executemany(
            "INSERT INTO metrics (app, name, grp, window_start, window_end, count, errors, "
            "total, min, max, sumsq, histogram) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            merged,
        )
        return PruneReport(rolled_up=len(rows))

    part = _in_transaction(conn, work)
    return part.rolled_up < step_rows, part


def _make_room(conn: sqlite3.Connection, now: float, step_rows: int) -> Optional[PruneReport]:
    """One step towards ``max_size``: the oldest detail, else an early roll-up, else the
    oldest windows. None when there is nothing left to remove."""

    def blocks() -> PruneReport:
        rows = conn.execute(
            "SELECT id, count FROM transaction_blocks ORDER BY id LIMIT ?", (step_rows,)
        ).fetchall()
        if rows:
            _delete_blocks(conn, [row[0] for row in rows])
        n = sum(row[1] for row in rows)
        return PruneReport(transactions=n, blocks=len(rows), early_transactions=n)

    part = _in_transaction(conn, blocks)
    if part.blocks:
        return part
    small_rows = step_rows * SMALL_ROWS_PER_BLOCK
    for tier, width in ((_FINE, 60), (_MINUTE, 3600)):
        _, part = _roll_up(conn, tier, width, now + 1.0, small_rows)
        if part.rolled_up:
            return part

    def windows() -> PruneReport:
        rows = conn.execute(
            "SELECT rowid, count FROM metrics ORDER BY window_end LIMIT ?", (small_rows,)
        ).fetchall()
        if rows:
            conn.executemany("DELETE FROM metrics WHERE rowid = ?", [(row[0],) for row in rows])
        return PruneReport(windows=len(rows), early_calls=sum(row[1] for row in rows))

    part = _in_transaction(conn, windows)
    return part if part.windows else None


#: Free pages given back per write transaction (4 MiB of 4 KiB pages): a short lock.
VACUUM_STEP_PAGES = 1024


def _vacuum(conn: sqlite3.Connection, before: int, stop_at: Optional[float] = None) -> PruneReport:
    """Give freed pages back, if the store can (``auto_vacuum = INCREMENTAL``), in steps
    of :data:`VACUUM_STEP_PAGES` until none is left or ``stop_at`` (monotonic) passes."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        while conn.execute("PRAGMA freelist_count").fetchone()[0]:
            # The pragma frees one page per step of its statement: fetch them all.
            conn.execute(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})").fetchall()
            if stop_at is not None and time.monotonic() >= stop_at:
                break
    return PruneReport(bytes_reclaimed=max(0, before - file_bytes(conn)))


def vacuum_into_incremental(conn: sqlite3.Connection) -> int:
    """Convert an older store to ``auto_vacuum = INCREMENTAL`` with one ``VACUUM`` (which
    also gives back every free page); returns the bytes reclaimed. Holds the database for
    as long as the copy takes: for ``tasktrace-admin prune``, never the reporter."""
    before = file_bytes(conn)
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
    return max(0, before - file_bytes(conn))
