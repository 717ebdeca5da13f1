"""The sqlite reporter's writes: one ``BEGIN IMMEDIATE`` transaction per harvest, with its
blocks, metrics and drop counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import (
    Any,
    Callable,
    List,
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


def _hostname() -> Optional[str]:
    """This machine's hostname, stored with every block (None if it cannot be had)."""
    import socket

    try:
        return socket.gethostname() or None
    except OSError:
        return None


class WriteRefused(Exception):
    """The commit was refused (the exit warning has been said): nothing was written."""


def write_batches(
    conn: sqlite3.Connection,
    batches: Sequence[Written],
    commit: Optional[Callable[[], bool]] = None,
) -> int:
    """Write ``batches`` in one ``BEGIN IMMEDIATE`` transaction; returns the number of
    transactions written.

    Each batch's records become blocks (one or more per key, see the module docstring) with
    ids allocated here (``MAX(id) + 1 ...``, safe because the write lock is held), so that
    segments and errors are inserted with ``executemany`` instead of a round trip per
    block; its metrics and drops become rows of their own.

    Args:
        conn: a connection from :func:`~tasktrace.store.connect` (not read-only), outside
            any transaction.
        batches: what to write, each with ``records``, ``metrics`` and ``drops``.
        commit: Commits the transaction and returns True, or returns False to have it
            rolled back instead (a :class:`~tasktrace.reporters.base.CommitGate` that
            closed); default: commit.

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
        for batch in batches:
            blocks.add(batch.records, batch.window_start, batch.window_end)
            metric_rows.extend(
                (
                    key.app,
                    key.name,
                    key.group,
                    batch.window_start,
                    batch.window_end,
                    stats.calls,
                    stats.errors,
                    stats.total,
                    stats.min,
                    stats.max,
                    stats.sumsq,
                )
                for key, stats in batch.metrics.items()
            )
            drop_rows.extend(
                (batch.window_end, batch.pid, d.app, d.reason, d.dropped) for d in batch.drops
            )
        written = blocks.insert(conn)
        if metric_rows:
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?)", metric_rows)
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
    return written
