"""The default reporter: writes every harvest into the local SQLite store (``store.py``).

One connection per process, opened lazily in the harvest thread and reopened after
``fork()``. Many processes may write the same file: each harvest is one ``BEGIN
IMMEDIATE`` transaction that waits for the others on SQLite's busy handler, within the
batch's time budget. If the database stays locked past that budget, the batch is *kept*
and written with the next harvest (up to ``buffer_size`` kept transactions; beyond that
the oldest kept transactions are dropped, counted, while their metrics and drop counts are
still written).

The transactions of a harvest are stored packed, a few hundred nanoseconds each (see
:mod:`tasktrace.store`). They are *sampled* per task name and harvest: every transaction
with an error is stored, then at most ``max_rows_per_name`` of the others, chosen at
random (``max_rows_per_name = 0`` stores every one). A busy worker thus stores a bounded
number of transactions by default, while calls, errors, totals and maxima stay exact in
the metrics table; only the percentiles of ``report`` come from the sample.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import time
from collections import Counter
from itertools import compress, repeat
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from tasktrace import _rng, store
from tasktrace._logging import get_logger
from tasktrace.config._settings import MIN_MAX_SIZE, ReporterSettings
from tasktrace.exceptions import StoreError
from tasktrace.records import TransactionRecord, app_of, errors_of, same_task, task_key_of
from tasktrace.reporters.base import (
    Batch,
    CommitGate,
    DropCount,
    ExportResult,
    MetricKey,
    MetricStats,
    transactions_in,
)

if TYPE_CHECKING:
    from tasktrace.config import Settings

__all__ = ["SqliteReporter", "db_path_for", "sample_rows"]

#: Seconds one export may wait for the write lock when the batch sets no deadline.
logger = get_logger()

DEFAULT_EXPORT_TIMEOUT = 5.0
#: Seconds between the background prunes of the store (each a few milliseconds).
PRUNE_EVERY = 60.0
#: Seconds of pruning work per harvest at most.
PRUNE_BUDGET = 0.05
#: Seconds of one wait for the write lock; between two, the deadline is looked at again.
_BUSY_SLICE = 0.25
#: Why transactions are kept (or, at shutdown, dropped): other writers held the lock.
REASON_LOCKED = "locked"
#: Rows let go from kept batches past ``max_kept`` (their metrics stay).
REASON_KEPT_FULL = "kept_full"


def db_path_for(settings: Settings) -> str:
    """``[reporter] path`` (which ``TASKTRACE_DB`` sets) or the default store path, under
    ``$XDG_DATA_HOME`` when it is set: resolved by :func:`tasktrace.store.resolve_db_path`,
    as ``report`` resolves it, so both name the same file."""
    return store.resolve_db_path(settings.reporter.path)


class SqliteReporter:
    """Writes batches to the SQLite store at ``path``.

    Args:
        settings: Supplies the path (see :func:`db_path_for`) and the bound on kept
            transactions (``buffer_size``).
        path: The database file, overriding the settings.
        timeout: Seconds an export may wait for other writers when the batch has no
            deadline of its own.
    """

    name = "sqlite"
    #: The exact metrics are stored, so a record evicted from the recorder's full buffer
    #: (whose row is gone) is still delivered here as a call.
    stores_metrics = True

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        path: Optional[str] = None,
        timeout: float = DEFAULT_EXPORT_TIMEOUT,
        max_kept: Optional[int] = None,
        max_rows_per_name: Optional[int] = None,
    ) -> None:
        if path is None:
            path = db_path_for(settings) if settings is not None else store.resolve_db_path(None)
        self.path = os.path.abspath(os.path.expanduser(path))
        self._timeout = timeout
        if max_kept is None:
            max_kept = settings.buffer_size if settings is not None else 10_000
        self._max_kept = max(0, max_kept)
        if max_rows_per_name is None:
            max_rows_per_name = (
                settings.reporter.max_rows_per_name if settings is not None else 1_000
            )
        self._max_rows_per_name = max(0, max_rows_per_name)
        self._conn: Optional[sqlite3.Connection] = None
        self._conn_pid = 0
        self._pid = os.getpid()
        #: Batches kept because the database was locked, oldest first.
        self._kept: List[Batch] = []
        #: The transactions the kept batches stand for (their metrics' calls, not their
        #: sampled rows): what the recorder's ledger shows as kept by this reporter.
        self._held = 0
        self._gate: Optional[CommitGate] = None
        self._closed = False
        reporter_settings = settings.reporter if settings is not None else ReporterSettings()
        self._retention = reporter_settings.retention
        self._max_size = reporter_settings.max_size
        if self._max_size < MIN_MAX_SIZE:
            logger.warning(
                "tasktrace: sqlite: max_size=%s bytes is below what a busy harvest needs; "
                "using %s bytes (16MiB)",
                self._max_size,
                MIN_MAX_SIZE,
            )
            self._max_size = MIN_MAX_SIZE
        #: When the next background prune may run (time.monotonic()); the first one comes
        #: with the first harvest, so a store left over the limit is fixed soon.
        self._next_prune = 0.0
        self._prune_failed = False
        self._said_early = False
        #: Removed before their retention to keep under max_size, in this process.
        self._early_transactions = 0
        self._early_calls = 0

    def _connection(self, budget_ms: int) -> sqlite3.Connection:
        if self._conn is not None and self._conn_pid != os.getpid():
            # Inherited through fork: never touch (or close) the parent's connection.
            self._conn = None
        if self._conn is None:
            self._conn = store.connect(self.path, busy_timeout_ms=budget_ms)
            self._conn_pid = os.getpid()
        else:
            self._conn.execute(f"PRAGMA busy_timeout = {budget_ms}")
        return self._conn

    def export(self, batch: Batch) -> ExportResult:
        """Write ``batch`` (and any kept ones) in one transaction.

        The result counts transactions as the batch's metrics do (rows may be sampled);
        while the database stays locked, ``kept`` says how many it holds.
        """
        units = transactions_in(batch)
        if self._closed:
            return ExportResult(
                False, dropped=units, reason="shut_down", message="reporter shut down"
            )
        if self._pid != os.getpid():
            # Inherited through fork: batches kept (or in flight) here are the parent's,
            # which the parent writes; writing them here too would duplicate them.
            self._pid = os.getpid()
            self._kept = []
            self._held = 0
            self._gate = None
        if self._max_rows_per_name:
            batch = batch._replace(records=sample_rows(batch.records, self._max_rows_per_name))
        self._kept.append(batch)
        self._held += units
        if batch.gate is not None:
            self._gate = batch.gate  # (the recorder's, for this process: kept for flushes)
        return self._write(batch.time_left(self._timeout), batch)

    def _write(self, budget: float, batch: Optional[Batch] = None) -> ExportResult:
        """Write every kept batch within ``budget`` seconds, or by ``batch``'s deadline
        if the recorder brings it forward meanwhile (the process is exiting)."""
        if not self._kept:
            return ExportResult(True)
        deadline = time.monotonic() + budget
        held = self._held
        last_error: Optional[BaseException] = None
        while True:
            left = deadline - time.monotonic()
            if batch is not None:
                left = batch.time_left(left)
            # SQLite's busy handler sleeps in C, deaf to a deadline brought forward: wait
            # for the lock in slices, looking at the deadline between them.
            left_ms = int(min(max(0.0, left), _BUSY_SLICE) * 1000)
            attempt = time.monotonic()
            try:
                conn = self._connection(max(1, left_ms))
                store.write_batches(conn, self._kept, self._commit_for(conn))
            except store.WriteRefused:
                # The recorder has said what was not delivered: these stay unwritten.
                return ExportResult(
                    False,
                    retryable=True,
                    kept=self._held,
                    reason=REASON_LOCKED,
                    message=f"database {self.path}: the exit budget ended before the write",
                )
            except sqlite3.OperationalError as exc:
                last_error = exc
                left = deadline - time.monotonic()
                if batch is not None:
                    left = batch.time_left(left)
                if _is_busy(exc) and left > 0.01:
                    # A slice ended, or the busy handler gave up at once (a deadlock
                    # guard): then pause a little rather than spin.
                    if time.monotonic() - attempt < left_ms / 2000:
                        time.sleep(min(0.005, left))
                    continue
                if _is_busy(exc):
                    lost = self._bound_kept()
                    return ExportResult(
                        False,
                        dropped=lost,
                        retryable=True,
                        kept=self._held,
                        reason=REASON_KEPT_FULL if lost else REASON_LOCKED,
                        message=(
                            f"database {self.path} is locked by other writers; kept "
                            f"{self._held} transactions for the next harvest"
                        ),
                    )
                break
            except (sqlite3.Error, OSError, ValueError) as exc:
                last_error = exc
                break
            except Exception as exc:  # e.g. StoreError: not a tasktrace store  # noqa: BLE001
                last_error = exc
                break
            self._kept = []
            self._held = 0
            if batch is not None:
                self._maybe_prune(conn, batch)
            return ExportResult(True, exported=held)
        # A lasting failure (disk full, not a database, no permission): give up on these,
        # rows and metrics alike, so every transaction they stand for is dropped (not only
        # the sampled rows).
        self._close_connection()
        self._kept = []
        self._held = 0
        if isinstance(last_error, StoreError):  # says the path, what is wrong, what to do
            message = f"not writing: {last_error}"
        else:
            message = f"cannot write {self.path}: {type(last_error).__name__}: {last_error}"
        return ExportResult(False, dropped=held, message=message)

    def _maybe_prune(self, conn: sqlite3.Connection, batch: Batch) -> None:
        """Every :data:`PRUNE_EVERY` seconds, after a harvest's write, a few milliseconds
        of pruning (retention, roll-ups, max_size; see :mod:`tasktrace.store._retention`).

        Steps are short write transactions, so other processes' harvests wait for one at
        most; unfinished work goes on after the next harvest. Never while the process is
        exiting (the batch's deadline is then near), and a failure is only logged: the
        next prune tries again.
        """
        now = time.monotonic()
        if now < self._next_prune or batch.time_left(1.0) < 1.0:
            return
        self._next_prune = now + PRUNE_EVERY
        try:
            report = store.prune(
                conn, retention=self._retention, max_size=self._max_size, budget=PRUNE_BUDGET
            )
        except Exception as exc:  # noqa: BLE001 - pruning must never fail a delivered harvest
            if not self._prune_failed:
                self._prune_failed = True
                logger.warning("tasktrace: sqlite: pruning %s failed: %s", self.path, exc)
            return
        if report.unfinished:
            self._next_prune = now  # go on after the next harvest
        self._early_transactions += report.early_transactions
        self._early_calls += report.early_calls
        if (report.early_transactions or report.early_calls) and not self._said_early:
            self._said_early = True
            lost = f" and the counts of {report.early_calls} calls" if report.early_calls else ""
            logger.warning(
                "tasktrace: sqlite: %s reached max_size=%s bytes: removed the detail of %d "
                "transactions%s before retention=%ss; raise max_size or shorten retention",
                self.path,
                self._max_size,
                report.early_transactions,
                lost,
                self._retention,
            )

    def _commit_for(self, conn: sqlite3.Connection) -> Optional[Callable[[], bool]]:
        """How to commit: through the recorder's gate when there is one."""
        gate = self._gate
        if gate is None:
            return None
        return lambda: gate.commit(self.name, lambda: conn.execute("COMMIT"))

    def _bound_kept(self) -> int:
        """Bound the memory the kept batches take; returns the transactions given up on.

        Rows beyond ``max_kept`` are let go, oldest first; a batch's exact metrics stay,
        so its transactions are still delivered when the store opens up (the rows let go
        are written as drops, reason ``sqlite:kept_full``). Batches left with no rows are
        merged into one (one metrics row per key, over their windows together), so that
        a store locked for hours costs memory per task name, not per harvest. Only the
        rows of a batch without metrics (which nothing else counts) are lost for good.
        """
        rows = sum(len(b.records) for b in self._kept)
        lost = 0
        for index, batch in enumerate(self._kept):
            if rows <= self._max_kept:
                break
            if not batch.records:
                continue
            rows -= len(batch.records)
            if batch.metrics:
                let_go = Counter(map(app_of, batch.records))
                drops = batch.drops + tuple(
                    DropCount(app, f"{self.name}:{REASON_KEPT_FULL}", n)
                    for app, n in let_go.items()
                )
                self._kept[index] = batch._replace(records=(), drops=drops)
            else:
                lost += len(batch.records)
                self._kept[index] = batch._replace(records=())
        self._held -= lost
        bare = [b for b in self._kept if not b.records]
        if len(bare) > 1:
            merged = _merge_bare(bare)
            first = next(i for i, b in enumerate(self._kept) if not b.records)
            rest = [b for b in self._kept if b.records]
            self._kept = [*rest[:first], merged, *rest[first:]]
        return lost

    def force_flush(self, timeout: Optional[float] = None) -> ExportResult:
        """Try once more to write kept batches; truthy if none is left."""
        if not self._kept:
            return ExportResult(True)
        budget = self._timeout if timeout is None else timeout
        return self._write(budget)

    def shutdown(self, timeout: Optional[float] = None) -> Optional[ExportResult]:
        """Write kept batches if possible, then close the connection. What cannot be
        written in time is given up on, and said: ``dropped`` with its reason (such as
        ``locked``)."""
        result: Optional[ExportResult] = None
        if not self._closed:
            result = self.force_flush(timeout)
            self._closed = True
            if self._held:
                gone = self._held
                self._kept = []
                self._held = 0
                result = ExportResult(
                    False,
                    exported=result.exported,
                    dropped=result.dropped + gone,
                    retryable=True,  # (it was only a matter of time)
                    reason=REASON_LOCKED,
                    message=result.message,
                )
        self._close_connection()
        return result

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._conn_pid == os.getpid():
            try:
                conn.close()
            except sqlite3.Error:
                pass


def sample_rows(
    records: Tuple[TransactionRecord, ...], limit: int
) -> Tuple[TransactionRecord, ...]:
    """Every errored record, plus at most ``limit`` others per (app, group, name), chosen
    at random (see :func:`_spread`).

    The order of the kept records is preserved. Everything that is per record runs in C
    (``itemgetter``, ``compress``, set operations): this runs in the harvest thread, which
    shares the GIL with the program. Python-level work is per task name, not per record.
    """
    n = len(records)
    if n <= limit:
        return records
    errorless = list(map(operator.not_, map(errors_of, records)))
    # The positions of each task name over the limit (usually the one name of the batch).
    if same_task(records):
        if all(errorless):  # the common case: `limit` positions spread over the harvest
            return tuple(map(records.__getitem__, _spread(n, limit)))
        over: List[Sequence[int]] = [range(n)]
    else:
        keys = list(map(task_key_of, records))
        over = [
            list(compress(range(n), map(key.__eq__, keys)))
            for key, count in Counter(keys).items()
            if count > limit
        ]
    dropped: Set[int] = set()
    for mine in over:
        plain = list(compress(mine, map(errorless.__getitem__, mine)))
        if len(plain) > limit:
            unchosen = set(plain)
            unchosen.difference_update(map(plain.__getitem__, _spread(len(plain), limit)))
            dropped |= unchosen
    if not dropped:
        return records
    return tuple(compress(records, map(operator.not_, map(dropped.__contains__, range(n)))))


def _spread(total: int, limit: int) -> Iterable[int]:
    """``limit`` positions out of ``range(total)``, evenly spaced from a random start.

    A systematic sample: every (total / limit)-th record of the harvest, the first one
    chosen at random among the first total / limit. Each record is kept with the same
    chance, as in a simple random sample, and the kept ones are spread evenly over the
    harvest window (which suits percentiles at least as well); unlike ``random.sample``,
    which draws in Python one position at a time, it is computed in C.
    """
    # Position i is (start + i * total) // limit, in integers: exact, distinct (total >
    # limit), and never past total - 1.
    start = _rng.randrange(total)
    return map(
        operator.floordiv,
        map(operator.add, repeat(start), map(operator.mul, range(limit), repeat(total))),
        repeat(limit),
    )


def _merge_bare(batches: Sequence[Batch]) -> Batch:
    """Batches without rows as one: exact metrics per key and drop counts per (app,
    reason) over their windows together."""
    metrics: Dict[MetricKey, MetricStats] = {}
    drops: Dict[Tuple[str, str], int] = {}
    for batch in batches:
        for key, stats in batch.metrics.items():
            mine = metrics.get(key)
            metrics[key] = stats if mine is None else mine.merged(stats)
        for drop in batch.drops:
            drops[(drop.app, drop.reason)] = drops.get((drop.app, drop.reason), 0) + drop.dropped
    return batches[0]._replace(
        metrics=metrics,
        window_start=min(b.window_start for b in batches),
        window_end=max(b.window_end for b in batches),
        drops=tuple(DropCount(app, reason, n) for (app, reason), n in drops.items()),
    )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message
