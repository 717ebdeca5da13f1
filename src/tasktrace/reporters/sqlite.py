"""The default reporter: writes every harvest into the local SQLite store (``store.py``).

One connection per process, opened lazily in the harvest thread and reopened after
``fork()``. Many processes may write the same file: each harvest is one ``BEGIN
IMMEDIATE`` transaction that waits for the others on SQLite's busy handler, within the
batch's time budget. If the database stays locked past that budget, the batch is *kept*
and written with the next harvest (up to ``buffer_size`` kept transactions; beyond that
the oldest kept transactions are dropped, counted, while their metrics and drop counts are
still written).

The transactions of a harvest are stored packed, a few hundred nanoseconds each (see
:mod:`tasktrace.store`). Their rows are *sampled* per task name and *minute*, not per
harvest (:class:`~tasktrace.reporters._row_budget.RowBudget`): at most
``max_rows_per_name`` errorless rows and ``max_error_rows_per_name`` errored ones per
(app, name, group) a minute, a uniform random sample spread over the minute (``0``
keeps every one). A busy worker thus adds rows at a bounded pace whatever its task rate,
a quiet one keeps every row, and calls, errors, totals, maxima and the latency
histograms (so ``report``'s percentiles) stay exact in the metrics table.

The metrics of a key are written as one row per harvest interval, not per harvest: a
harvest that comes less than ``harvest_interval`` after the start of this process's last
row for the key adds its metrics to that row (one ``UPDATE`` in the same transaction),
so a program harvesting many times a second does not grow the metrics table with its
harvest rate either.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Set, Tuple

from tasktrace import store
from tasktrace._host import hostname
from tasktrace._logging import get_logger
from tasktrace.config._settings import MIN_MAX_SIZE, ReporterSettings
from tasktrace.config._settings import Settings as _Settings
from tasktrace.exceptions import StoreError
from tasktrace.records import RunningReport, ScheduleEntry, TransactionRecord, app_of
from tasktrace.reporters._row_budget import RowBudget
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

__all__ = ["SqliteReporter", "db_path_for"]

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
        max_kept: Rows held while the database is locked (default ``buffer_size``).
        max_rows_per_name: Errorless rows stored per task name and minute (default
            ``[reporter] max_rows_per_name``); 0 stores every one.
        max_error_rows_per_name: Errored rows stored per task name and minute (default
            ``[reporter] max_error_rows_per_name``); 0 stores every one.
        window_seconds: How long one metrics row and one slot of the row budget last
            (default ``harvest_interval``).
        clock: Monotonic seconds, for the row budget and the metrics rows (injectable
            for tests).
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
        max_error_rows_per_name: Optional[int] = None,
        window_seconds: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if path is None:
            path = db_path_for(settings) if settings is not None else store.resolve_db_path(None)
        self.path = os.path.abspath(os.path.expanduser(path))
        self._timeout = timeout
        if max_kept is None:
            max_kept = settings.buffer_size if settings is not None else 10_000
        self._max_kept = max(0, max_kept)
        defaults = settings.reporter if settings is not None else ReporterSettings()
        if max_rows_per_name is None:
            max_rows_per_name = defaults.max_rows_per_name
        if max_error_rows_per_name is None:
            max_error_rows_per_name = defaults.max_error_rows_per_name
        if window_seconds is None:
            window_seconds = (settings or _Settings()).harvest_interval
        self._budget_args = (max_rows_per_name, max_error_rows_per_name, window_seconds)
        self._clock = clock
        self._window_seconds = max(0.0, float(window_seconds))
        self._budget = RowBudget(*self._budget_args, clock=clock)
        #: This process's newest metrics row per key: what the next harvest may add to.
        self._open_windows: Dict[MetricKey, store.OpenWindow] = {}
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
        self._retention = defaults.retention
        self._max_size = defaults.max_size
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
        self._reset_liveness()

    # -- liveness (SPEC section 7) ------------------------------------------------------

    def _reset_liveness(self) -> None:
        self._host = hostname()
        #: The newest finished run per (app, name) not yet in ``last_runs``.
        self._pending_runs: Dict[Tuple[str, str], TransactionRecord] = {}
        #: Span ids this process last wrote as running, and those of them since finished.
        self._running_spans: Set[int] = set()
        self._finished_spans: List[int] = []

    def _note_runs(self, records: Tuple[TransactionRecord, ...]) -> None:
        """Remember the newest run per task of ``records`` (every one, before the row
        budget samples them) and which of this process's running entries they end."""
        pending = self._pending_runs
        for key, record in {(r.app, r.name): r for r in records if r.background}.items():
            seen = pending.get(key)
            if seen is None or record.start >= seen.start:
                pending[key] = record
        running = self._running_spans
        if running:
            for record in records:
                if record.span_id in running:
                    running.discard(record.span_id)
                    self._finished_spans.append(record.span_id)

    def _write_liveness(self, conn: sqlite3.Connection) -> None:
        """Write what :meth:`_note_runs` gathered; on failure it waits for the next write."""
        if not self._pending_runs and not self._finished_spans:
            return
        try:
            store.note_finished(conn, self._pending_runs, self._host, self._finished_spans)
        except sqlite3.Error:
            logger.debug("tasktrace: sqlite: last runs not written yet", exc_info=True)
            return
        self._pending_runs = {}
        self._finished_spans = []

    def report_running(self, report: RunningReport, timeout: float) -> bool:
        """Replace this process's running entries with ``report``'s; True if written.

        Called by the recorder on the harvest thread after each export (SPEC section 7);
        a failure (locked, disk full) is retried by the next harvest, whose report says
        everything again.
        """
        if self._closed or self._pid != os.getpid():
            return False
        try:
            conn = self._connection(max(1, int(min(timeout, _BUSY_SLICE) * 1000)))
            store.replace_running(conn, report)
        except (sqlite3.Error, OSError, StoreError):
            logger.debug("tasktrace: sqlite: running tasks not written", exc_info=True)
            return False
        self._running_spans = {task.span_id for task in report.tasks}
        return True

    def record_schedules(self, entries: Sequence[ScheduleEntry], timeout: float) -> bool:
        """Record this program's scheduled targets, so ``check`` knows them; True if written."""
        if self._closed:
            return False
        try:
            conn = self._connection(max(1, int(min(timeout, _BUSY_SLICE) * 1000)))
            store.record_schedules(conn, entries, time.time())
        except (sqlite3.Error, OSError, StoreError):
            logger.debug("tasktrace: sqlite: schedules not recorded", exc_info=True)
            return False
        return True

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
            self._budget = RowBudget(*self._budget_args, clock=self._clock)
            self._open_windows = {}
            self._reset_liveness()
        if batch.records:
            self._note_runs(batch.records)
        self._budget.offer(batch.records)
        batch = batch._replace(records=self._budget.take_due())
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
                store.write_batches(
                    conn,
                    self._kept,
                    self._commit_for(conn),
                    open_windows=self._open_windows,
                    window_seconds=self._window_seconds,
                )
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
            self._forget_closed_windows()
            self._kept = []
            self._held = 0
            self._write_liveness(conn)
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

    def _forget_closed_windows(self) -> None:
        """Forget the metrics rows no later harvest can add to (their window is full)."""
        if not self._kept:
            return
        end = self._kept[-1].window_end
        for key in [
            key
            for key, window in self._open_windows.items()
            if end - window.window_start >= self._window_seconds
        ]:
            del self._open_windows[key]

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
        """Write the rows the row budget holds, and try once more to write kept batches;
        truthy if none is left."""
        if self._pid == os.getpid():
            rows = self._budget.take_all()
            if rows and self._kept:
                last = self._kept[-1]
                self._kept[-1] = last._replace(records=last.records + rows)
            elif rows and not self._closed:
                self._write_rows(rows, self._timeout if timeout is None else timeout)
        if not self._kept:
            return ExportResult(True)
        budget = self._timeout if timeout is None else timeout
        return self._write(budget)

    def _write_rows(self, rows: Tuple[TransactionRecord, ...], budget: float) -> None:
        """Write rows the budget held, on their own (nothing else is waiting): once, within
        ``budget`` seconds. They are samples of transactions their metrics have already
        delivered, so if they cannot be written they are let go, and nothing is lost
        that the ledger counts."""
        now = time.time()
        batch = Batch(rows, {}, now - self._window_seconds, now, (), os.getpid())
        try:
            conn = self._connection(max(1, int(budget * 1000)))
            store.write_batches(conn, [batch], self._commit_for(conn))
        except Exception:  # (locked, refused at exit, disk full: samples only)
            logger.debug("tasktrace: sampled rows not written", exc_info=True)

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
