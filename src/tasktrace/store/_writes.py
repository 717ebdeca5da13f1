"""The sqlite reporter's writes: one ``BEGIN IMMEDIATE`` transaction per harvest, with its
blocks, metrics and drop counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import (
    Any,
    Callable,
    Dict,
    List,
    MutableMapping,
    NamedTuple,
    Optional,
    Protocol,
    Tuple,
)

from tasktrace.records import (
    DropCount,
    MetricKey,
    MetricStats,
    TransactionRecord,
)
from tasktrace.store._packing import _Blocks

# -- writes --------------------------------------------------------------------------------


class Written(Protocol):
    """What :func:`write_batches` reads of a batch (``reporters.base.Batch`` is one): the
    store depends on the data, not on the reporters."""

    @property
    def records(self) -> Tuple[TransactionRecord, ...]: ...
    @property
    def metrics(self) -> Mapping[MetricKey, MetricStats]: ...
    @property
    def window_start(self) -> float: ...
    @property
    def window_end(self) -> float: ...
    @property
    def drops(self) -> Tuple[DropCount, ...]: ...
    @property
    def pid(self) -> int: ...


class OpenWindow(NamedTuple):
    """A metrics row a writer may still add to: its rowid, the start of its window, and
    the stats it holds (see :func:`write_batches`)."""

    rowid: int
    window_start: float
    stats: MetricStats


def _hostname() -> Optional[str]:
    """This machine's hostname, stored with every block (None if it cannot be had)."""
    import socket

    try:
        return socket.gethostname() or None
    except OSError:
        return None


class WriteRefused(Exception):
    """The commit was refused (the exit warning has been said): nothing was written."""


_INSERT_METRICS = (
    "INSERT INTO metrics (app, name, grp, window_start, window_end, count, errors, "
    "total, min, max, sumsq, histogram) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
_EXTEND_METRICS = (
    "UPDATE metrics SET window_end = ?, count = ?, errors = ?, total = ?, min = ?, max = ?, "
    "sumsq = ?, histogram = ? WHERE rowid = ? AND app = ? AND name = ? AND grp = ? "
    "AND window_start = ?"
)


def _values(stats: MetricStats) -> Tuple[Any, ...]:
    return (
        stats.calls,
        stats.errors,
        stats.total,
        stats.min,
        stats.max,
        stats.sumsq,
        None if stats.histogram is None else stats.histogram.to_bytes(),
    )


def write_batches(
    conn: sqlite3.Connection,
    batches: Sequence[Written],
    commit: Optional[Callable[[], bool]] = None,
    *,
    open_windows: Optional[MutableMapping[MetricKey, OpenWindow]] = None,
    window_seconds: float = 0.0,
) -> int:
    """Write ``batches`` in one ``BEGIN IMMEDIATE`` transaction; returns the number of
    transactions written.

    Each batch's records become blocks (one or more per key, see the module docstring) with
    ids allocated here (``MAX(id) + 1 ...``, safe because the write lock is held), so that
    segments and errors are inserted with ``executemany`` instead of a round trip per
    block; its metrics (with their histograms, encoded) and drops become rows of their own.

    Args:
        conn: a connection from :func:`~tasktrace.store.connect` (not read-only), outside
            any transaction.
        batches: what to write, each with ``records``, ``metrics`` and ``drops``.
        commit: Commits the transaction and returns True, or returns False to have it
            rolled back instead (a :class:`~tasktrace.reporters.base.CommitGate` that
            closed); default: commit.
        open_windows: The writer's newest metrics row per key (its own: a process keeps
            its own). A batch whose window ends less than ``window_seconds`` after the
            start of that row's window adds its metrics to the row (the row's window then
            ends where the batch's does) instead of inserting one; a row gone meanwhile
            (pruned) is inserted again. Updated once the transaction commits.
        window_seconds: How long a metrics row may grow (the harvest interval).

    Raises:
        sqlite3.OperationalError: ``database is locked`` beyond the busy timeout, disk
            full, ... (nothing is written then).
        WriteRefused: ``commit`` refused (nothing is written).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM transaction_blocks").fetchone()
        blocks = _Blocks(int(row[0]) + 1, host=_hostname())
        metric_rows: List[Tuple[Any, ...]] = []
        drop_rows: List[Tuple[Any, ...]] = []
        opened: Dict[MetricKey, OpenWindow] = {}
        for batch in batches:
            blocks.add(batch.records, batch.window_start, batch.window_end)
            if open_windows is None:
                metric_rows.extend(
                    (
                        key.app,
                        key.name,
                        key.group,
                        batch.window_start,
                        batch.window_end,
                        *_values(stats),
                    )
                    for key, stats in batch.metrics.items()
                )
            else:
                for key, stats in batch.metrics.items():
                    opened[key] = _write_window(
                        conn,
                        key,
                        stats,
                        batch,
                        opened.get(key) or open_windows.get(key),
                        window_seconds,
                    )
            drop_rows.extend(
                (batch.window_end, batch.pid, d.app, d.reason, d.dropped) for d in batch.drops
            )
        written = blocks.insert(conn)
        if metric_rows:
            conn.executemany(_INSERT_METRICS, metric_rows)
        if drop_rows:
            conn.executemany("INSERT INTO drops VALUES (?,?,?,?,?)", drop_rows)
        if commit is None:
            conn.execute("COMMIT")
        elif not commit():
            raise WriteRefused("the exit warning was said first")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # BEGIN itself failed: there is nothing to roll back
        raise
    if open_windows is not None:
        open_windows.update(opened)
    return written


def _write_window(
    conn: sqlite3.Connection,
    key: MetricKey,
    stats: MetricStats,
    batch: Written,
    window: Optional[OpenWindow],
    window_seconds: float,
) -> OpenWindow:
    """Add ``stats`` to the open ``window`` if the batch ends within ``window_seconds`` of
    its start, else insert a row; returns the row now open for ``key``."""
    if window is not None and batch.window_end - window.window_start < window_seconds:
        merged = window.stats.merged(stats)
        cursor = conn.execute(
            _EXTEND_METRICS,
            (
                batch.window_end,
                *_values(merged),
                window.rowid,
                key.app,
                key.name,
                key.group,
                window.window_start,
            ),
        )
        if cursor.rowcount == 1:
            return OpenWindow(window.rowid, window.window_start, merged)
    cursor = conn.execute(
        _INSERT_METRICS,
        (key.app, key.name, key.group, batch.window_start, batch.window_end, *_values(stats)),
    )
    return OpenWindow(int(cursor.lastrowid or 0), batch.window_start, stats)
