"""When finished transactions are delivered: a bounded buffer, exact aggregation, a harvest
thread, and the process-life hooks (exit, SIGTERM, fork, multiprocessing, ``os._exit``).

The instrumented call only appends its record to a deque (:meth:`HarvestRecorder.record`);
everything else happens in one daemon thread per process, named ``tasktrace-harvest``, which
wakes every ``harvest_interval`` (or early, when the buffer is half full, or when ``flush()``
or ``shutdown()`` asks), aggregates the records, and hands one :class:`~tasktrace.reporters.
base.Batch` to each reporter in turn.

Exactness. The buffer holds at most ``buffer_size`` records; beyond that the oldest record
is evicted. Eviction happens on the overflow path of ``record()`` (never on the fast path),
under a lock, and folds the evicted records (the oldest tenth at once) into per-key
aggregates and a per-app drop count before letting them go. The harvest thread drains the
deque under the same lock, with ``popleft()`` called from C (so a record appended
concurrently is never lost between "read" and "clear"), and takes the folded aggregates
with it, so every record is counted in exactly one window,
either as a kept record or as a dropped one. Metrics (count, errors, total, min, max, sum of
squares) are therefore exact whatever is dropped.

Accounting. One ledger, per reporter, says what became of every transaction recorded:
delivered, dropped (by reason), or pending -- buffered, in flight, or kept by the reporter
for a later harvest (``ExportResult.kept``). A reporter with ``stores_metrics`` (SQLite)
delivers evicted records as calls; for the others they are dropped (``buffer_full``).
``pending()``, ``flush()`` and the exit warning read the ledger, so what is said at exit
plus what was delivered is exactly what was recorded.

Process life:

* ``atexit``: a final delivery, run by the harvest thread; the exiting thread waits for it
  at most ``shutdown_timeout`` (the thread is a daemon, so a hanging collector cannot hold
  the process).
* SIGTERM: when the recorder starts in the main thread and SIGTERM still has its default
  disposition, a handler delivers (within ``shutdown_timeout``), restores the default and
  re-sends SIGTERM, so the exit status is what it would have been. A handler the program
  installed earlier is chained (we deliver, then call it); one it installs later replaces
  ours, and ``atexit`` still delivers if it exits normally. The handler itself takes none
  of our locks (it may have interrupted code holding them): the delivery runs in a helper
  thread it joins, or, if an exit delivery is already running, after that one ends.
* SIGHUP (the terminal or the session went away): handled as SIGTERM, but only while it
  has its default action; a program's own SIGHUP handler (often "reload") is never
  replaced nor chained, and an ignored SIGHUP (``nohup``) stays ignored.
* ``os.fork()``: the child starts with an empty buffer, zero counters, no thread and fresh
  reporters; the parent's pending records stay with the parent, which delivers them.
* Children that end with ``os._exit()`` skip ``atexit``. ``multiprocessing`` children run
  ``multiprocessing.util._exit_function()`` first, so a ``multiprocessing.util.Finalize``
  is registered there (only if ``multiprocessing`` is already imported: this module never
  imports it). Other forked children (RQ's fork-per-job, plain ``os.fork()``) get an
  ``os._exit`` wrapper that delivers first; it is installed only in forked children.

Every exit path shares one per-process deadline, so however many of them run, exit waits
at most ``shutdown_timeout`` in total.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import sys
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from itertools import compress, repeat, starmap
from operator import mul
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Set, Tuple

from tasktrace import _fork
from tasktrace._logging import get_logger
from tasktrace.config import Settings
from tasktrace.records import (
    TransactionRecord,
    app_of,
    duration_of,
    errors_of,
    same_task,
    task_key_of,
)
from tasktrace.reporters.base import (
    Batch,
    CommitGate,
    Deadline,
    DropCount,
    ExportResult,
    MetricKey,
    MetricStats,
    Reporter,
)

# (Imported here, not lazily in the threads that use it: a fork while another thread is
# importing a module leaves the child with a half-initialised module it can never import.)
from tasktrace.transaction import refresh_epoch_offset, suppress_instrumentation

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "HARVEST_THREAD_NAME",
    "HarvestRecorder",
    "Recorder",
    "create_recorder",
    "is_harvest_thread",
]

logger = get_logger()

#: The name of the harvest thread, so that it is easy to spot in thread dumps.
HARVEST_THREAD_NAME = "tasktrace-harvest"

#: Drop reason for records evicted because the buffer was full.
REASON_BUFFER_FULL = "buffer_full"
#: Drop reason for records recorded after the recorder was shut down.
REASON_AFTER_SHUTDOWN = "after_shutdown"
#: What the exit warning says of transactions still pending when the exit budget ended.
REASON_SHUTDOWN_TIMEOUT = "shutdown_timeout"


class _Account:
    """What one reporter was given, by transactions (see HarvestRecorder._settle)."""

    __slots__ = ("delivered", "dropped", "in_flight", "kept", "name", "stores_metrics")

    def __init__(self, name: str, stores_metrics: bool) -> None:
        self.name = name
        #: The reporter delivers the exact metrics, which count evicted records too.
        self.stores_metrics = stores_metrics
        self.delivered = 0
        #: Dropped by reason ("<reporter>:<reason>").
        self.dropped: Dict[str, int] = {}
        #: Handed to the reporter in the export running now.
        self.in_flight = 0
        #: Held by the reporter for a later harvest (what its last answer said).
        self.kept = 0


# Aggregates while they are being built: [count, errors, total, min, max, sumsq]. A list is
# cheaper to update in place than rebuilding a NamedTuple per record.
_Agg = List[Any]
_AggMap = Dict[Tuple[str, str, str], _Agg]
ReporterFactoryFn = Callable[[Settings], Sequence[Reporter]]


class Recorder(Protocol):
    """What ``tasktrace._state.STATE`` needs from a recorder."""

    def record(self, record: TransactionRecord) -> None:
        """Take one finished transaction. Called on the application's thread: must be cheap,
        must not block, must not raise."""
        ...

    def configure(self, settings: Settings) -> None:
        """Apply new settings (buffer size, interval, reporters)."""
        ...

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver everything recorded so far; True if all of it went out in time."""
        ...

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver everything, then stop; True if all of it went out in time."""
        ...


#: Above this many distinct keys in one chunk, records are grouped by a Python loop (one
#: pass) rather than by one C pass over the chunk per key.
_MAX_KEYS_BY_SCAN = 8


def _fold_many(aggs: _AggMap, records: Sequence[TransactionRecord]) -> None:
    """Add ``records`` to the aggregates ``aggs``.

    This is the per-record cost of delivery (every record is folded once, when it is
    harvested or evicted), and it shares the GIL with the program, so the work per record
    is done in C: columns are read with ``itemgetter`` over the whole chunk, and count,
    errors, total, min, max and sum of squares are each one C loop per key. (An errorless
    record's ``errors`` is always the empty tuple, so errors are counted with
    ``list.count``.)
    """
    if not records:
        return
    for key, group_records in _by_key(records):
        durations = list(map(duration_of, group_records))
        count = len(durations)
        errors = count - list(map(errors_of, group_records)).count(())
        total = sum(durations)
        low = min(durations)
        high = max(durations)
        sumsq = sum(map(mul, durations, durations))
        agg = aggs.get(key)
        if agg is None:
            aggs[key] = [count, errors, total, low, high, sumsq]
            continue
        agg[0] += count
        agg[1] += errors
        agg[2] += total
        if low < agg[3]:
            agg[3] = low
        if high > agg[4]:
            agg[4] = high
        agg[5] += sumsq


def _by_key(
    records: Sequence[TransactionRecord],
) -> Iterable[Tuple[Tuple[str, str, str], Sequence[TransactionRecord]]]:
    """Non-empty ``records`` grouped by (app, name, group), order kept within a group."""
    if same_task(records):  # the common case, checked without a key tuple per record
        return ((task_key_of(records[0]), records),)
    keys = list(map(task_key_of, records))
    distinct = dict.fromkeys(keys)
    if len(distinct) <= _MAX_KEYS_BY_SCAN:
        return [(key, list(compress(records, map(key.__eq__, keys)))) for key in distinct]
    by_key: Dict[Tuple[str, str, str], List[TransactionRecord]] = {}
    for key, record in zip(keys, records):
        group = by_key.get(key)
        if group is None:
            by_key[key] = [record]
        else:
            group.append(record)
    return by_key.items()


def _merge_agg(into: _AggMap, other: _AggMap) -> None:
    """Merge aggregates ``other`` into ``into``."""
    for key, agg in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = agg
            continue
        mine[0] += agg[0]
        mine[1] += agg[1]
        mine[2] += agg[2]
        mine[3] = min(mine[3], agg[3])
        mine[4] = max(mine[4], agg[4])
        mine[5] += agg[5]


def aggregate(records: Sequence[TransactionRecord]) -> Dict[MetricKey, MetricStats]:
    """Exact per-key aggregates of ``records`` (a helper for reporters and tests)."""
    aggs: _AggMap = {}
    _fold_many(aggs, records)
    return {MetricKey(*key): MetricStats(*agg) for key, agg in aggs.items()}


_DIGITS = re.compile(r"\d+")


class HarvestRecorder:
    """The default recorder: bounded buffer, exact aggregates, one harvest thread per process.

    Args:
        settings: The agent settings (buffer size, interval, reporters, shutdown budget).
        reporters: Reporters to use instead of building them from ``settings.reporter``
            (tests, or a program that wires its own). They are reused in forked children.
        reporter_factory: Builds the reporters from settings; defaults to
            :func:`tasktrace.reporters.registry.create_reporters`. Called in the harvest
            thread, so that importing ``sqlite3`` or ``httpx`` never happens on the
            application's thread, and again in each forked child.
        install_process_hooks: Install the ``atexit``/SIGTERM/multiprocessing hooks when the
            harvest thread starts (default True; tests of the buffer turn it off).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        reporters: Optional[Sequence[Reporter]] = None,
        reporter_factory: Optional[ReporterFactoryFn] = None,
        install_process_hooks: bool = True,
    ) -> None:
        self._settings = settings
        self._apply_sizes(settings)
        #: Reporters given as objects are reused as they are in forked children (tests);
        #: reporters from a factory are rebuilt there, since the parent's may hold its
        #: connections and a batch it was exporting at the moment of the fork.
        self._fixed_reporters = reporters is not None
        if reporters is not None:
            fixed = list(reporters)
            self._factory: ReporterFactoryFn = lambda _settings: fixed
        elif reporter_factory is not None:
            self._factory = reporter_factory
        else:
            self._factory = _default_reporters
        self._hooks = install_process_hooks
        self._reporters: Optional[List[Reporter]] = None
        self._reporters_stale = False
        self._reset_process_state()
        _LIVE.add(self)

    # -- per-process state ------------------------------------------------------------

    def _reset_process_state(self) -> None:
        """Make this object look as a fresh process would have it (used after fork too)."""
        self._pid = os.getpid()
        self._buffer: deque[TransactionRecord] = deque()
        # Until the thread runs, the fast path is closed (len(buffer) < 0 never holds), so
        # the first record in the process takes the slow path, which starts the thread.
        # This keeps the "started?" check out of the fast path.
        self._high_water = 0
        # Guards eviction, the folded aggregates, the drop counters and thread start. An
        # RLock so that a signal handler running on a thread that holds it cannot deadlock.
        self._lock = threading.RLock()
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._wake_pending = False
        self._thread: Optional[threading.Thread] = None
        self._evicted: _AggMap = {}
        self._pending_drops: Dict[Tuple[str, str], int] = {}
        self._drop_totals: Dict[str, int] = {}
        self._window_start = time.time()
        self._flush_requested = 0
        self._flush_done = 0
        self._flush_ok = True
        self._flush_deadline: Optional[float] = None
        self._stopping = False
        self._stopped = False
        #: The ledger (see _settle): one account per reporter name.
        self._accounts: Dict[str, _Account] = {}
        #: Records evicted from the full buffer whose metrics wait for the next harvest.
        self._unharvested_evictions = 0
        #: Of those, the ones evicted after the final harvest (no reporter takes them).
        self._unharvested_evictions_lost = 0
        #: A reporter gave up at shutdown for lack of time (said in the exit warning).
        self._out_of_time = False
        #: Closed by the exit warning, so that no write commits after it (see CommitGate).
        self._gate = CommitGate()
        #: The deadline of the export in progress, which _post() may bring forward.
        self._export_deadline: Optional[Deadline] = None
        self._logged: set[Tuple[str, str]] = set()
        self._warned = False
        if not self._fixed_reporters:
            # Connections, files and any batch in flight belong to the parent; build new
            # reporters lazily (never shut the inherited ones down: that would close the
            # parent's connections).
            self._reporters = None

    # -- the hot path -----------------------------------------------------------------

    def record(self, record: TransactionRecord) -> None:
        """Buffer one finished transaction: an attribute read, a ``len`` and an append.

        Never blocks, never does I/O, never raises. When the buffer is half full the
        slow path wakes the harvest thread; when it is full, it evicts the oldest record
        (counted, and kept in the metrics).
        """
        buffer = self._buffer
        if len(buffer) < self._high_water:
            buffer.append(record)
        else:
            self._record_slow(record)

    def _record_slow(self, record: TransactionRecord) -> None:
        """First record in this process, buffer half full, or buffer full."""
        try:
            if self._stopped:
                self._count_drop(record, REASON_AFTER_SHUTDOWN)
                return
            # (After os.fork() the at-fork hook has already reset _thread to None in the
            # child, so no getpid() call is needed on this path.)
            if self._thread is None and not self._start():
                self._count_drop(record, REASON_AFTER_SHUTDOWN)
                return
            buffer = self._buffer
            size = len(buffer)
            if size < self._high_water:  # the first record in this process
                buffer.append(record)
                return
            if size < self._limit:
                buffer.append(record)
                self._wake_early()
                # Until the harvest thread has drained the buffer, let the fast path take
                # records up to the limit (the thread resets this in _cycle).
                if self._high_water:
                    self._high_water = self._limit
                return
            with self._lock:
                # Evict the oldest tenth at once: under sustained overload the lock and
                # the drop bookkeeping are then paid once per chunk, not once per record.
                # The pop is one C call (no bytecode runs in it, so nothing interleaves),
                # and the harvest thread drains under this lock, so `chunk` records are
                # there to pop.
                chunk = min(self._evict_chunk, len(buffer))
                evicted = list(starmap(buffer.popleft, repeat((), chunk)))
                buffer.append(record)
                _fold_many(self._evicted, evicted)
                self._unharvested_evictions += chunk
                for app, count in Counter(map(app_of, evicted)).items():
                    self._add_drop(app, REASON_BUFFER_FULL, count)
            self._wake_early()
        except Exception:  # SPEC 2.8: never raise into the instrumented code
            pass

    def _wake_early(self) -> None:
        """Wake the harvest thread before its interval ends (once per harvest)."""
        if not self._wake_pending:
            self._wake_pending = True
            self._wake.set()

    def _count_drop(self, record: TransactionRecord, reason: str) -> None:
        with self._lock:
            self._add_drop(record.app, reason, 1)

    def _add_drop(self, app: str, reason: str, count: int) -> None:
        """Count a drop; the caller holds ``self._lock``."""
        key = (app, reason)
        self._pending_drops[key] = self._pending_drops.get(key, 0) + count
        self._drop_totals[reason] = self._drop_totals.get(reason, 0) + count

    # -- thread start -----------------------------------------------------------------

    def _start(self) -> bool:
        """Start the harvest thread in this process; False if the recorder is shut down."""
        with self._lock:
            if self._pid != os.getpid():
                # Forked without our at-fork hook (a fork from C code): start afresh.
                self._reset_process_state()
            if self._stopped:
                return False
            if self._thread is not None or self._stopping:
                return True
            thread = threading.Thread(target=self._run, name=HARVEST_THREAD_NAME, daemon=True)
            self._window_start = time.time()
            try:
                _start_without_signals(thread)
            except RuntimeError:
                # Interpreter shutdown: no new threads. Keep buffering; the exit flush
                # delivers inline.
                self._high_water = 0
                return True
            self._thread = thread
            self._high_water = self._half
        if self._hooks:
            _install_process_hooks(self._settings)
        return True

    # -- configuration ----------------------------------------------------------------

    def _apply_sizes(self, settings: Settings) -> None:
        """The buffer bound and what follows from it, and the harvest interval."""
        self._limit = max(1, int(settings.buffer_size))
        #: Where the fast path hands over to the slow one, which wakes the harvest thread.
        self._half = max(1, self._limit // 2)
        #: How many of the oldest records a full buffer evicts at once.
        self._evict_chunk = max(1, self._limit // 10)
        # Clamped to what a wait accepts (validation refuses more; settings built in code
        # bypass it), so that the harvest thread never dies of an OverflowError.
        self._interval = _wait_seconds(max(0.001, float(settings.harvest_interval)))

    def configure(self, settings: Settings) -> None:
        """Apply new settings; new reporter settings take effect at the next harvest."""
        with self._lock:
            old = self._settings
            self._settings = settings
            self._apply_sizes(settings)
            if self._thread is not None:
                self._high_water = self._half
            if settings.reporter != old.reporter:
                self._reporters_stale = True

    @property
    def settings(self) -> Settings:
        """The settings in use."""
        return self._settings

    # -- flush and shutdown -----------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver everything recorded before this call; True if it all went out in time.

        Args:
            timeout: Seconds to wait at most (None: as long as the reporters take, which
                their own timeouts bound).
        """
        return self._request(timeout, stop=False)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver everything, shut the reporters down and stop the thread.

        Records arriving afterwards are counted as dropped (``after_shutdown``). Returns
        True if everything went out within ``timeout``.
        """
        return self._request(timeout, stop=True)

    def _request(self, timeout: Optional[float], *, stop: bool) -> bool:
        if timeout is None:
            return self._wait(self._post(None, stop=stop), None)
        timeout = max(0.0, timeout)
        deadline = time.monotonic() + timeout
        ticket = self._post(deadline - _settling_margin(timeout), stop=stop)
        return self._wait(ticket, deadline)

    def _post(self, deadline: Optional[float], *, stop: bool) -> int:
        """Ask the harvest thread for a cycle; returns the ticket to wait for."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._reset_process_state()
        with self._cond:
            if stop:
                self._stopping = True
            self._flush_requested += 1
            ticket = self._flush_requested
            if deadline is not None and (
                self._flush_deadline is None or deadline < self._flush_deadline
            ):
                self._flush_deadline = deadline
        exporting = self._export_deadline
        if exporting is not None:
            # An export is running (perhaps retrying a dead collector): make it give up
            # in time for this request; when stopping, it gets half the budget and the
            # final harvest the other half.
            now = time.monotonic()
            if stop:
                exporting.bring_forward(now if deadline is None else now + (deadline - now) / 2)
            elif deadline is not None:
                exporting.bring_forward(deadline)
        self._wake.set()
        return ticket

    def _wait(self, ticket: int, deadline: Optional[float]) -> bool:
        """Wait until the cycle serving ``ticket`` is done, or the deadline passes."""
        thread = self._thread
        if thread is threading.current_thread():
            return False  # a reporter calling flush() would wait for itself
        if thread is None or not thread.is_alive():
            # Never started in this process (nothing recorded), or could not start (exit):
            # run the cycle here. The reporters honour the batch deadline.
            if self._stopped and not self._buffer:
                return True
            return self._cycle()
        with self._cond:
            while self._flush_done < ticket:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(None if left is None else _wait_seconds(left))
            return self._flush_ok

    # -- the harvest thread -----------------------------------------------------------

    def _run(self) -> None:
        """The harvest loop: wait, drain, aggregate, export; until shut down."""
        suppress_instrumentation()  # exports must never be instrumented themselves
        while True:
            self._wake.wait(self._interval)
            refresh_epoch_offset()  # follow wall-clock adjustments in the records' starts
            try:
                self._cycle()
            except Exception:  # never let the thread die; log once
                self._log_once("recorder", "harvest failed", exc_info=True)
            if self._stopped:
                return

    def _cycle(self) -> bool:
        """One harvest (and the flush or shutdown asked for); True if all was delivered."""
        self._wake.clear()
        self._wake_pending = False
        if self._high_water > self._half:  # opened up by _record_slow: back to half
            self._high_water = self._half
        with self._cond:
            ticket = self._flush_requested
            deadline = self._flush_deadline
            self._flush_deadline = None
            stopping = self._stopping
        served = ticket > self._flush_done
        ok = False
        try:
            ok = self._harvest(deadline)
            if served or stopping:
                reporters = self._reporters or []
                for reporter in reporters:
                    ok = self._flush_reporter(reporter, deadline) and ok
                if stopping:
                    for reporter in reporters:
                        self._close_reporter(reporter, deadline)
        finally:
            # Waiters are released even if the harvest failed unexpectedly.
            self._finish_cycle(ticket, ok, stopping)
        return ok

    def _finish_cycle(self, ticket: int, ok: bool, stopping: bool) -> None:
        with self._cond:
            if ticket > self._flush_done:
                self._flush_done = ticket
            self._flush_ok = ok
            if stopping:
                self._stopped = True
                # Anything recorded from now on takes the slow path and is counted.
                self._high_water = 0
            self._cond.notify_all()
        if stopping:
            # Records that raced with the final drain are counted, not silently lost;
            # so are records evicted meanwhile, whose metrics no reporter will take now.
            late, _evicted, _drops = self._take()
            with self._lock:
                for record in late:
                    self._add_drop(record.app, REASON_AFTER_SHUTDOWN, 1)
                for key, n in _drops.items():
                    self._pending_drops[key] = self._pending_drops.get(key, 0) + n
                self._unharvested_evictions_lost += self._unharvested_evictions
                self._unharvested_evictions = 0

    def _timeout_until(self, deadline: Optional[float]) -> Optional[float]:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _flush_reporter(self, reporter: Reporter, deadline: Optional[float]) -> bool:
        """``reporter.force_flush``, in isolation; its answer is entered in the ledger."""
        try:
            result = reporter.force_flush(self._timeout_until(deadline))
        except Exception as exc:
            self._log_once(_name(reporter), f"force_flush failed: {type(exc).__name__}: {exc}")
            return False
        if isinstance(result, ExportResult):
            return self._settle(reporter, result, 0)
        if result is not False:
            # "Nothing is left": whatever the reporter said it kept went out.
            self._settle(reporter, ExportResult(True), 0)
            return True
        return False

    def _close_reporter(self, reporter: Reporter, deadline: Optional[float]) -> None:
        """``reporter.shutdown``, in isolation; what it still keeps afterwards is dropped."""
        try:
            result = reporter.shutdown(self._timeout_until(deadline))
        except Exception as exc:
            self._log_once(_name(reporter), f"shutdown failed: {type(exc).__name__}: {exc}")
            result = None
        if isinstance(result, ExportResult):
            self._settle(reporter, result, 0)
        account = self._account(reporter)
        if account.kept:
            # Shut down still holding transactions without saying what became of them.
            gone = ExportResult(False, dropped=account.kept, retryable=True, reason="shutdown")
            self._settle(reporter, gone, 0)

    def _take(self) -> Tuple[List[TransactionRecord], _AggMap, Dict[Tuple[str, str], int]]:
        """Drain the buffer; take the evicted aggregates and drop counters."""
        buffer = self._buffer
        with self._lock:
            # One C call drains the buffer: a record appended concurrently lands in this
            # batch or the next, never nowhere. Under the lock, so eviction cannot race it.
            records = list(starmap(buffer.popleft, repeat((), len(buffer))))
            evicted, self._evicted = self._evicted, {}
            drops, self._pending_drops = self._pending_drops, {}
        return records, evicted, drops

    def _harvest(self, deadline: Optional[float]) -> bool:
        """Build one batch and hand it to every reporter; True if all of them took it."""
        reporters = self._current_reporters()
        buffer = self._buffer
        with self._lock:
            # As _take, and in the same step the ledger moves what is taken from
            # "buffered" (or "evicted, not harvested") to "in flight" for every reporter,
            # so that pending() never misses it nor counts it twice.
            records = list(starmap(buffer.popleft, repeat((), len(buffer))))
            evicted, self._evicted = self._evicted, {}
            drops, self._pending_drops = self._pending_drops, {}
            evictions, self._unharvested_evictions = self._unharvested_evictions, 0
            # (Reporters are told apart by name: two of one name share an account.)
            handed: List[int] = []
            owners: List[Optional[Reporter]] = list(reporters) if reporters else [None]
            for owner in owners:
                account = self._account(owner)
                units = len(records) + (evictions if account.stores_metrics else 0)
                account.in_flight += units
                handed.append(units)
        now = time.time()
        window_start, self._window_start = self._window_start, now
        if not records and not evicted and not drops:
            # Nothing new; a reporter that kept a batch back gets its chance to write it
            # (briefly, unless a flush asked: an exit may come meanwhile, and cannot
            # bring a force_flush's timeout forward).
            ok = True
            retry_by = time.monotonic() + min(1.0, self._interval) if deadline is None else deadline
            for reporter in reporters:
                if self._account(reporter).kept:
                    ok = self._flush_reporter(reporter, retry_by) and ok
            return ok
        aggs: _AggMap = {}
        _fold_many(aggs, records)
        _merge_agg(aggs, evicted)
        export_deadline = Deadline(deadline)
        batch = Batch(
            records=tuple(records),
            metrics={MetricKey(*key): MetricStats(*agg) for key, agg in aggs.items()},
            window_start=window_start,
            window_end=now,
            drops=tuple(DropCount(app, reason, n) for (app, reason), n in drops.items()),
            pid=self._pid,
            deadline=export_deadline,
            gate=self._gate,
        )
        self._export_deadline = export_deadline
        try:
            ok = True
            for reporter, units in zip(reporters, handed):
                ok = self._export(reporter, batch, units) and ok
            if not reporters:
                self._settle(None, ExportResult(False, dropped=handed[0]), handed[0], batch)
                ok = not handed[0]
            return ok
        finally:
            self._export_deadline = None

    def _export(self, reporter: Reporter, batch: Batch, handed: int) -> bool:
        """Hand ``batch`` to one reporter; enter the outcome in the ledger (see _settle)."""
        try:
            result = reporter.export(batch)
        except Exception as exc:
            kept = self._account(reporter).kept
            result = ExportResult(
                success=False,
                dropped=handed,
                kept=kept,
                message=f"export raised {type(exc).__name__}: {exc}",
            )
        if not isinstance(result, ExportResult):
            result = ExportResult(True)  # a plugin returning None: assume it took the batch
        return self._settle(reporter, result, handed, batch)

    # -- the ledger -------------------------------------------------------------------
    #
    # One account per reporter of every transaction this process recorded (STYLE habit
    # 17): delivered, dropped by reason, or pending (buffered, in flight, or kept by the
    # reporter for a later harvest). pending(), flush(), drop_totals() and the exit
    # warning all read it, so that delivered + said dropped = recorded holds exactly.
    # It lives under self._lock, which the eviction path already holds.

    def _account(self, reporter: Optional[Reporter]) -> _Account:
        """The account of ``reporter`` (None: no reporter could be built)."""
        name = "" if reporter is None else _name(reporter)
        account = self._accounts.get(name)
        if account is None:
            stores = bool(getattr(reporter, "stores_metrics", False))
            with self._lock:
                account = self._accounts.setdefault(name, _Account(name, stores))
        return account

    def _settle(
        self,
        reporter: Optional[Reporter],
        result: ExportResult,
        handed: int,
        batch: Optional[Batch] = None,
    ) -> bool:
        """Enter what ``reporter`` answered about the ``handed`` transactions given to it
        and those it kept from before; count and log (once) what it could not take.

        The answer is made to add up: a reporter that says too little (a plugin that
        returns ``ExportResult(True)``) delivered the rest if it succeeded and dropped it
        if it failed; one that says too much is capped. Returns True if everything it
        held went out.
        """
        account = self._account(reporter)
        name = account.name
        with self._lock:
            held = account.kept + handed
            kept = min(max(0, result.kept), held)
            dropped = min(max(0, result.dropped), held - kept)
            exported = min(max(0, result.exported), held - kept - dropped)
            rest = held - kept - dropped - exported
            if result.success:
                exported += rest
            else:
                dropped += rest
            account.in_flight = max(0, account.in_flight - handed)
            account.kept = kept
            account.delivered += exported
            if not name:
                reason = "no_reporter"
            else:
                why = result.reason or ("rejected" if result.success else "export_failed")
                reason = f"{name}:{why}"
            if dropped:
                account.dropped[reason] = account.dropped.get(reason, 0) + dropped
                self._add_drops_for(batch, reason, dropped)
            if self._stopping and dropped and result.retryable:
                self._out_of_time = True  # given up on at exit for lack of time
            if name:
                self._gate.settled(name)  # (after the ledger took what it committed)
        if name and (not result.success or dropped):
            self._log_once(name, result.message or "export failed")
        return result.success and not dropped and not kept

    def _add_drops_for(self, batch: Optional[Batch], reason: str, count: int) -> None:
        """Attribute ``count`` dropped transactions to their apps (as the records of
        ``batch`` spread them; the rest under the first app). The caller holds the lock."""
        apps: Dict[str, int] = {}
        for record in batch.records if batch is not None else ():
            apps[record.app] = apps.get(record.app, 0) + 1
        left = count
        if count >= sum(apps.values()):
            for app, n in apps.items():
                self._add_drop(app, reason, n)
                left -= n
        if left:
            # A partial refusal does not say which spans, and kept batches of earlier
            # harvests are not in this one: the count goes under the first app.
            app = next(iter(apps), self._settings.app_name)
            self._add_drop(app, reason, left)

    def _current_reporters(self) -> List[Reporter]:
        """The reporters, built lazily in this thread (so heavy imports happen here)."""
        if self._reporters_stale and self._reporters is not None:
            old, self._reporters = self._reporters, None
            for reporter in old:
                self._close_reporter(reporter, time.monotonic() + 1.0)
        self._reporters_stale = False
        if self._reporters is None:
            try:
                self._reporters = list(self._factory(self._settings))
            except Exception as exc:
                self._log_once("recorder", f"cannot create reporters: {exc}")
                self._reporters = []
        return self._reporters

    def _log_once(self, who: str, message: str, *, exc_info: bool = False) -> None:
        """Log a delivery problem once per distinct (reporter, message shape)."""
        key = (who, _DIGITS.sub("N", message))
        if key in self._logged:
            return
        self._logged.add(key)
        # Reporter problems go to "tasktrace.<reporter>" (e.g. "tasktrace.otlp") so they
        # can be filtered per reporter; the agent routes all "tasktrace" loggers to stderr.
        log = logger if who == "recorder" else get_logger(f"tasktrace.{who}")
        log.warning("tasktrace: %s: %s", who, message, exc_info=exc_info)

    # -- accounting -------------------------------------------------------------------

    def drop_totals(self) -> Dict[str, int]:
        """Transactions dropped in this process so far, by reason.

        ``buffer_full`` counts records evicted from the full buffer (their calls are still
        in the metrics, which a reporter with ``stores_metrics`` delivers);
        ``"<reporter>:<reason>"`` counts what that reporter could not deliver.
        """
        with self._lock:
            return dict(self._drop_totals)

    def pending(self) -> int:
        """Transactions recorded in this process that some reporter has neither delivered
        nor said dropped yet: buffered, being exported, or kept by a reporter for a later
        harvest (the most of any one reporter)."""
        with self._lock:
            return max(self._pending_of(a) for a in self._all_accounts())

    def _all_accounts(self) -> List[_Account]:
        """The accounts, or an empty one for a recorder that has not harvested yet.
        The caller holds the lock."""
        return list(self._accounts.values()) or [_Account("", True)]

    def _pending_of(self, account: _Account) -> int:
        """Not yet delivered nor dropped for ``account``. The caller holds the lock."""
        pending = len(self._buffer) + account.in_flight + account.kept
        if account.stores_metrics:
            pending += self._unharvested_evictions
        return pending

    def undelivered(
        self, committed: Optional[Set[str]] = None
    ) -> Dict[str, Tuple[int, Dict[str, int], int]]:
        """Per reporter: (delivered, dropped by reason, pending) transactions, from the
        ledger; for any reporter, delivered + dropped + pending = recorded.

        Args:
            committed: Reporters that committed everything they held (in flight and
                kept) without the ledger having entered it yet (see CommitGate).
        """
        with self._lock:
            totals = self._drop_totals
            view: Dict[str, Tuple[int, Dict[str, int], int]] = {}
            for account in self._all_accounts():
                written = 0
                if committed and account.name in committed:
                    written = account.in_flight + account.kept
                dropped = dict(account.dropped)
                if account.stores_metrics:
                    # Evicted after the final harvest: not even in the metrics.
                    lost = self._unharvested_evictions_lost
                    if lost:
                        dropped[REASON_BUFFER_FULL] = lost
                elif totals.get(REASON_BUFFER_FULL):
                    dropped[REASON_BUFFER_FULL] = totals[REASON_BUFFER_FULL]
                if totals.get(REASON_AFTER_SHUTDOWN):
                    dropped[REASON_AFTER_SHUTDOWN] = totals[REASON_AFTER_SHUTDOWN]
                view[account.name] = (
                    account.delivered + written,
                    dropped,
                    self._pending_of(account) - written,
                )
            return view

    def _warn_at_exit(self) -> None:
        """Say on stderr (through logging), from the ledger, what this process did not
        deliver: one line per reporter, with the reasons; pending transactions count as
        not delivered within ``shutdown_timeout``."""
        if self._warned:
            return
        self._warned = True
        # From here on nothing commits: what is said below is what happened.
        view = self.undelivered(self._gate.close())
        if self._out_of_time or any(pending for _, _, pending in view.values()):
            logger.warning(
                "tasktrace: delivery did not finish within shutdown_timeout=%ss",
                self._settings.shutdown_timeout,
            )
        for name, (delivered, dropped, pending) in sorted(view.items()):
            if pending:
                dropped[REASON_SHUTDOWN_TIMEOUT] = dropped.get(REASON_SHUTDOWN_TIMEOUT, 0) + pending
            lost = sum(dropped.values())
            if not lost:
                continue
            details = ", ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items()) if n)
            logger.warning(
                "tasktrace: %d of %d transactions of process %d were not delivered %s (%s)",
                lost,
                delivered + lost,
                self._pid,
                f"to {name}" if name else "to any reporter",
                details,
            )
        evicted = self.drop_totals().get(REASON_BUFFER_FULL, 0)
        if evicted and any(a.stores_metrics for a in self._accounts.values()):
            logger.warning(
                "tasktrace: the buffer of process %d was full: %d transactions were kept "
                "only in the metrics, without their rows (buffer_full: %d)",
                self._pid,
                evicted,
                evicted,
            )

    def __repr__(self) -> str:
        return (
            f"<HarvestRecorder pid={self._pid} buffered={len(self._buffer)} "
            f"limit={self._limit} interval={self._interval}>"
        )


def _name(reporter: Reporter) -> str:
    return str(getattr(reporter, "name", type(reporter).__name__))


def _default_reporters(settings: Settings) -> Sequence[Reporter]:
    from tasktrace.reporters.registry import create_reporters

    return create_reporters(settings)


def create_recorder(settings: Settings) -> HarvestRecorder:
    """The default recorder for ``settings`` (reporters are built on the first harvest)."""
    return HarvestRecorder(settings)


#: Signals that are never synchronous (a fault of the thread itself): these are blocked
#: in tasktrace's threads, so that the kernel hands them to a thread of the program.
_ASYNC_SIGNALS: Optional[Set[signal.Signals]] = (
    set(signal.valid_signals())
    - {
        getattr(signal, name)
        for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT")
        if hasattr(signal, name)
    }
    if hasattr(signal, "pthread_sigmask")
    else None
)


def _start_without_signals(thread: threading.Thread) -> None:
    """Start ``thread`` with asynchronous signals blocked in it.

    CPython runs Python signal handlers in the main thread only, and a signal is handed by
    the kernel to any thread that does not block it. Had it gone to one of our threads
    while the main thread waited in a blocking C call (a ``multiprocessing`` queue's lock,
    say), the main thread would not wake up to run the handler -- for a pool worker
    terminated with SIGTERM, that means never exiting, and its parent hanging in
    ``Pool.terminate()``. A new thread inherits its creator's signal mask, so the signals
    are blocked around ``start()``: there is no window in which the thread takes one.
    """
    if _ASYNC_SIGNALS is None:
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _settling_margin(budget: float) -> float:
    """How much sooner than a flush or exit budget ends the reporters must give up.

    The waiting thread reads the ledger when the budget ends; reporters that stop a
    little before (a tenth of the budget, at most a quarter of a second) have entered
    their answers by then, so what is said matches what happened.
    """
    return min(0.25, 0.1 * max(0.0, budget))


def _wait_seconds(seconds: float) -> float:
    """``seconds``, at most ``threading.TIMEOUT_MAX`` (a longer wait raises OverflowError)."""
    return min(seconds, threading.TIMEOUT_MAX)


def is_harvest_thread() -> bool:
    """True on a tasktrace harvest thread (whose work must never be instrumented)."""
    return threading.current_thread().name == HARVEST_THREAD_NAME


# -- process hooks --------------------------------------------------------------------------

#: Every recorder alive in this process; the exit, signal and fork hooks walk it.
_LIVE: weakref.WeakSet[HarvestRecorder] = weakref.WeakSet()

_hooks_lock = threading.Lock()
#: pid in which atexit/SIGTERM/multiprocessing hooks were installed (one set per process).
_hooks_pid = 0
_atexit_registered = False
#: (pid, deadline): the shared exit budget of this process, once an exit path began.
_exit_deadline: Optional[Tuple[int, float]] = None
#: The pid running an exit delivery right now (0: none), to detect re-entry.
_exiting_pid = 0
#: A SIGTERM (signum, frame) that arrived during an exit delivery, acted on after it.
_sigterm_pending: Optional[Tuple[int, Optional[FrameType]]] = None
#: The signals whose default action ends the process and that we deliver on first.
_EXIT_SIGNALS: Tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
#: The only one whose earlier Python handler we chain to (see _install_signal_handlers).
_CHAINED_SIGNALS = frozenset({signal.SIGTERM})
#: The program's handlers that ours replaced, by signal (callable: we chain to it).
_previous_handlers: Dict[int, Any] = {}
#: The signals our handler is installed for in this process's main thread.
_handled_signals: Set[int] = set()
#: How many times _on_sigterm has started in this process (the watcher looks).
_sigterm_calls = 0
#: The read end of this process's wake-up pipe (see _watch_signals); -1: none.
_wakeup_read = -1
_wakeup_write = -1
#: How long the watcher lets the main thread take to run the handler before nudging it.
SIGTERM_NUDGE_AFTER = 0.5
_real_os_exit: Callable[[int], Any] = os._exit


def _install_process_hooks(settings: Settings) -> None:
    """atexit, SIGTERM and multiprocessing hooks, once per process."""
    global _hooks_pid, _atexit_registered
    pid = os.getpid()
    with _hooks_lock:
        if _hooks_pid == pid:
            return
        _hooks_pid = pid
        if not _atexit_registered:
            # atexit registrations survive fork, so one is enough for parent and children.
            atexit.register(_at_exit)
            _atexit_registered = True
    _install_signal_handlers()
    _register_multiprocessing_finalizer()
    if _forked_before_import() and os._exit is not _exit_after_delivery:
        # This module was first imported after a fork (the parent never recorded), so
        # our at-fork hook did not run: wrap os._exit now, as that hook would have.
        os._exit = _exit_after_delivery


def _forked_before_import() -> bool:
    """True in a forked child whose parent had not imported this module.

    ``tasktrace._state`` may mark ``STATE.forked_child`` from its own (cheap) at-fork
    hook; without that mark a child cannot be told from a parent, and nothing is done.
    """
    state = sys.modules.get("tasktrace._state")
    return bool(getattr(getattr(state, "STATE", None), "forked_child", False))


def _install_signal_handlers() -> None:
    """Deliver on SIGTERM and SIGHUP, if it can be done without changing what they do."""
    if threading.current_thread() is not threading.main_thread():
        return
    installed = [signum for signum in _EXIT_SIGNALS if _install_exit_handler(signum)]
    if installed:
        _install_signal_watch()  # (a forked child keeps the handlers, not the watch)


def _install_exit_handler(signum: int) -> bool:
    """Put ``_on_sigterm`` in place for ``signum``; True if it is (or already was)."""
    if signum in _handled_signals:
        return True
    try:
        current = signal.getsignal(signum)
    except (ValueError, AttributeError, OSError):
        return False
    if current is _on_sigterm:
        _handled_signals.add(signum)
        return True
    # SIG_IGN: the program wants to survive the signal; None: a handler installed from C
    # that we cannot call. Leave both alone. A Python handler is chained for SIGTERM
    # only: a SIGHUP handler usually means "reload", which must not come with a delivery
    # and an exit, so such a program keeps its SIGHUP to itself.
    chain = signum in _CHAINED_SIGNALS and callable(current)
    if current is not signal.SIG_DFL and not chain:
        return False
    try:
        signal.signal(signum, _on_sigterm)
    except (ValueError, OSError):
        return False
    _previous_handlers[signum] = current if chain else None
    _handled_signals.add(signum)
    return True


def _install_signal_watch() -> None:
    """Make sure our SIGTERM handler runs even if the signal lands just before the main
    thread blocks in a C call.

    CPython's C-level handler only notes the signal; the Python handler runs when the main
    thread next executes bytecode. A signal that arrives after the main thread's last
    check and before it blocks (in ``sem_wait`` under a ``multiprocessing`` lock, say)
    interrupts nothing, so the handler waits for the call to return -- for a pool worker
    that ``Pool.terminate()`` stops while the pool holds its queue's lock, forever, and
    the parent hangs joining it. SIGTERM with its default action cannot be missed; a
    handler can, so the handler brings this guard with it: a wake-up fd
    (``signal.set_wakeup_fd``), to which the C handler writes each signal's number, and
    a thread that reads it. When SIGTERM comes through and our handler has not started
    within :data:`SIGTERM_NUDGE_AFTER` seconds, the thread sends SIGTERM to the main
    thread itself (``pthread_kill``), which interrupts the blocking call, and the handler
    runs.

    The wake-up fd is a Unix datagram socket whose reader asks the kernel for each
    sender's pid (``SO_PASSCRED``): a forked child inherits the fd until its at-fork hook
    drops it, and a signal it takes meanwhile must not make this process terminate
    itself. Linux only (elsewhere there is no way to tell, and no guard); only when no
    other wake-up fd is set (asyncio sets its own, and its loop is woken by it anyway);
    main thread only, like ``signal.signal``.
    """
    global _wakeup_read, _wakeup_write
    if _wakeup_read >= 0 or not hasattr(signal, "pthread_kill"):
        return
    # The C module, not `socket` (which costs a few milliseconds more to import): this
    # runs on the program's thread, at its first task.
    import _socket

    if not hasattr(_socket, "SO_PASSCRED") or not hasattr(_socket, "SCM_CREDENTIALS"):
        return
    try:
        reader, writer = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    except OSError:
        return
    try:
        reader.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
        writer.setblocking(False)
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):
        reader.close()
        writer.close()
        return
    if previous != -1:  # someone else's: leave it in place, and go without the guard
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return
    _wakeup_read, _wakeup_write = reader.detach(), writer.detach()
    watcher = threading.Thread(
        target=_watch_signals, args=(_wakeup_read,), name="tasktrace-signals", daemon=True
    )
    try:
        _start_without_signals(watcher)
    except RuntimeError:  # interpreter shutdown
        _close_signal_watch()


def _watch_signals(read_fd: int) -> None:
    """The watcher thread: read signal numbers, each with its sender's pid, from the
    wake-up socket; nudge on a SIGTERM taken by this process."""
    import _socket
    import struct

    pid = os.getpid()
    credentials = struct.Struct("=iII")  # struct ucred: pid, uid, gid
    reader = _socket.socket(fileno=read_fd)
    try:
        while True:
            try:
                data, ancillary, _flags, _address = reader.recvmsg(
                    64, _socket.CMSG_SPACE(credentials.size)
                )
            except OSError:  # closed (after fork, or by tests)
                return
            if not data:
                return
            sender = -1
            for level, kind, payload in ancillary:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_CREDENTIALS:
                    sender = credentials.unpack_from(payload)[0]
            if sender == pid:
                for signum in _EXIT_SIGNALS:
                    if signum in data:
                        _nudge_if_unhandled(signum)
    finally:
        reader.detach()  # the fd is closed by _close_signal_watch, not here


def _nudge_if_unhandled(signum: int) -> None:
    """SIGTERM (or SIGHUP) arrived: if our handler has never run in this process within
    the grace period (and is still the one installed), send the signal to the main thread
    to wake it.

    Only a process whose handler never ran is nudged. The handler usually runs before
    this thread even reads the signal's number, so "not since the signal" cannot be told
    apart from "not at all" -- and a second SIGTERM must never reach a program's own
    handler that we chain to (many take it as "stop now, don't finish"). The first
    SIGTERM is the one that ends a process under the default action, the case the guard
    is for.
    """
    deadline = time.monotonic() + SIGTERM_NUDGE_AFTER
    while time.monotonic() < deadline:
        if _sigterm_calls:
            return
        time.sleep(0.01)
    if _sigterm_calls or signal.getsignal(signum) is not _on_sigterm:
        return
    try:
        signal.pthread_kill(threading.main_thread().ident or 0, signum)
    except (OSError, ValueError):
        pass


def _restore_signal_dispositions() -> None:
    """In a forked child: give the signals our handler took back to what they were.

    Python-level handlers survive fork, the watcher thread that guards ours does not
    (see :func:`_install_signal_watch`). A child with our handler and no watcher can miss
    a SIGTERM for good (a pool worker blocked on its queue's lock when Pool.terminate()
    comes: the worker hangs, and the parent joining it). A child has recorded nothing
    yet, so it has nothing to deliver: it gets the program's own disposition back, and
    the handler returns, with its watcher, when the child records
    (:func:`_install_process_hooks`).
    """
    for signum in list(_handled_signals):
        previous = _previous_handlers.get(signum)
        try:
            if signal.getsignal(signum) is _on_sigterm:
                signal.signal(signum, previous if callable(previous) else signal.SIG_DFL)
        except (ValueError, OSError):  # not the main thread: leave it as it is
            continue
        _previous_handlers.pop(signum, None)
        _handled_signals.discard(signum)


def _close_signal_watch() -> None:
    """Forget this process's wake-up pipe (after fork: the parent's; it is the parent's
    watcher that reads it)."""
    global _wakeup_read, _wakeup_write
    read_fd, write_fd = _wakeup_read, _wakeup_write
    _wakeup_read = _wakeup_write = -1
    if read_fd < 0:
        return
    try:
        current = signal.set_wakeup_fd(-1)
        if current != write_fd:  # not ours any more (asyncio's, say): put it back
            signal.set_wakeup_fd(current)
    except (ValueError, OSError):  # not the main thread
        pass
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    """SIGTERM or SIGHUP: deliver, then behave exactly as the previous disposition would.

    A Python signal handler runs on the main thread between two bytecodes of whatever it
    was doing -- possibly inside our own code, holding one of our locks (the record slow
    path, ``flush()``, an exit delivery already under way). So the handler never takes
    those locks itself: if an exit delivery is running, it only notes the signal, which
    that delivery acts on when it ends; otherwise the delivery runs in a helper thread
    that the handler joins for at most the exit budget.
    """
    global _sigterm_pending, _sigterm_calls
    _sigterm_calls += 1
    if _exiting_pid == os.getpid():
        _sigterm_pending = (signum, frame)
        return
    previous = _previous_handlers.get(signum)
    timeout = _max_shutdown_timeout()
    deliver: Callable[[], object] = (
        (lambda: _flush_all(timeout)) if callable(previous) else _exit_flush_all
    )

    def target() -> None:
        suppress_instrumentation()
        deliver()

    helper = threading.Thread(target=target, name="tasktrace-sigterm", daemon=True)
    try:
        _start_without_signals(helper)
        helper.join(_wait_seconds(timeout + 0.5))
    except Exception:  # no thread could start (interpreter shutdown): deliver nothing
        pass
    _after_sigterm_delivery(signum, frame)


def _after_sigterm_delivery(signum: int, frame: Optional[FrameType]) -> None:
    """Do what the signal would have done without tasktrace."""
    previous = _previous_handlers.get(signum)
    if callable(previous):
        # The program has its own graceful shutdown: let it run; atexit delivers the
        # rest if it exits normally.
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _register_multiprocessing_finalizer() -> None:
    """In a multiprocessing child, deliver from ``util._exit_function`` (before os._exit)."""
    mp_process = sys.modules.get("multiprocessing.process")
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_process is None or mp_util is None:
        return  # never import multiprocessing ourselves: it costs startup time
    try:
        if mp_process.parent_process() is None:
            return  # the main process: atexit covers it
        # Finalize(None, ..., exitpriority=0) runs in _exit_function's first pass, which
        # Process._bootstrap calls in every child (fork, forkserver, spawn) before the
        # child ends with os._exit. Registered in the child itself: the registry is
        # cleared when a child starts, and a Finalize is ignored in another pid.
        mp_util.Finalize(None, _exit_flush_all, exitpriority=0)
    except Exception:
        pass


def _max_shutdown_timeout() -> float:
    pid = os.getpid()
    timeouts = [r._settings.shutdown_timeout for r in list(_LIVE) if r._pid == pid]
    return max(timeouts, default=0.0)


def _flush_all(timeout: float) -> None:
    """Flush every recorder of this process, together, within ``timeout``."""
    pid = os.getpid()
    recorders = [r for r in list(_LIVE) if r._pid == pid and r._thread is not None]
    deadline = time.monotonic() + timeout
    work_deadline = deadline - _settling_margin(timeout)
    tickets = [(r, r._post(work_deadline, stop=False)) for r in recorders]
    for recorder, ticket in tickets:
        try:
            recorder._wait(ticket, deadline)
        except Exception:
            pass


def _at_exit() -> None:
    """The ``atexit`` hook: the final delivery, leaving the exit status as it was.

    A program ended by an unhandled ``KeyboardInterrupt`` (Ctrl-C, SIGINT) exits by
    SIGINT -- status 130 in a shell -- because ``Py_RunMain`` reads a flag after the
    interpreter is finalized. Every piece of code compiled from a string on the way
    (``exec``/``eval``; ``dataclasses`` builds its methods so, and the first harvest may
    import modules that use it) resets that flag, and the status would become 1. So when
    the program is ending on a ``KeyboardInterrupt``, the flag is set again once the
    delivery is done.
    """
    interrupted = _ending_on_keyboard_interrupt()
    try:
        _exit_flush_all()
    finally:
        if interrupted:
            _mark_keyboard_interrupt_unhandled()


def _ending_on_keyboard_interrupt() -> bool:
    """True if the main program ended with an unhandled ``KeyboardInterrupt``.

    ``PyErr_Print`` stores the exception that ended the main program in ``sys.last_exc``
    (3.12+) and ``sys.last_value`` before ``atexit`` runs; nothing else sets them in a
    program that is not interactive (an interactive session sets them for every error it
    shows, so it is left alone).
    """
    if sys.flags.interactive or hasattr(sys, "ps1"):
        return False
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


def _mark_keyboard_interrupt_unhandled() -> None:
    """Set CPython's "unhandled KeyboardInterrupt" flag again.

    The flag is set when code compiled from a string ends with a ``KeyboardInterrupt``
    (``run_eval_code_obj``), so that is what this does; the exception is caught here.
    """
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass


def _exit_flush_all() -> None:
    """The final delivery of this process, shared by every exit path, within one budget.

    Safe to call several times (atexit, multiprocessing's exit function, the ``os._exit``
    wrapper, SIGTERM): later calls only use what is left of the first call's budget.
    """
    global _exiting_pid, _sigterm_pending
    pid = os.getpid()
    if _exiting_pid == pid:
        return  # re-entered (from another exit path while this one runs)
    _exiting_pid = pid
    try:
        _exit_flush_recorders(pid)
    finally:
        _exiting_pid = 0
        pending, _sigterm_pending = _sigterm_pending, None
        if pending is not None:
            # SIGTERM (SIGHUP) arrived while we delivered: now act on it as it would have.
            _after_sigterm_delivery(*pending)


def _exit_flush_recorders(pid: int) -> None:
    global _exit_deadline
    try:
        recorders = [r for r in list(_LIVE) if r._pid == pid]
        if not recorders:
            return
        if _exit_deadline is None or _exit_deadline[0] != pid:
            _exit_deadline = (pid, time.monotonic() + _max_shutdown_timeout())
        deadline = _exit_deadline[1]
        work_deadline = deadline - _settling_margin(_max_shutdown_timeout())
        tickets = []
        for recorder in recorders:
            if recorder._stopped or (recorder._thread is None and not recorder._buffer):
                continue
            tickets.append((recorder, recorder._post(work_deadline, stop=True)))
        for recorder, ticket in tickets:
            recorder._wait(ticket, deadline)  # (what did not finish is pending in the ledger)
            recorder._warn_at_exit()
        for recorder in recorders:
            recorder._warn_at_exit()  # (says nothing if everything was delivered)
    except Exception as exc:  # exit must go on whatever happens here; say it once
        for recorder in [r for r in list(_LIVE) if r._pid == pid][:1]:
            recorder._log_once(
                "recorder", f"exit delivery failed: {type(exc).__name__}: {exc}", exc_info=True
            )


def _exit_after_delivery(status: int) -> Any:
    """``os._exit`` in forked children: deliver this process's records, then exit."""
    _exit_flush_all()
    return _real_os_exit(status)


def _before_fork() -> None:
    # Hold every recorder's lock across fork() so the child never copies a half-done
    # eviction; the harvest thread holds it only for short, I/O-free sections.
    for recorder in list(_LIVE):
        recorder._lock.acquire()


def _after_fork_in_parent() -> None:
    for recorder in list(_LIVE):
        try:
            recorder._lock.release()
        except RuntimeError:
            pass


def _after_fork_in_child() -> None:
    global _hooks_pid, _exit_deadline, _exiting_pid, _sigterm_pending, _sigterm_calls
    _exiting_pid = 0
    _sigterm_pending = None
    _sigterm_calls = 0
    # The wake-up pipe is the parent's: a signal here must not reach its watcher. A new
    # one comes with the hooks, when this process records.
    _close_signal_watch()
    for recorder in list(_LIVE):
        # Fresh state: the parent's pending records are the parent's to deliver. The old
        # lock is abandoned (never released): new objects replace everything.
        recorder._reset_process_state()
    _hooks_pid = 0
    _exit_deadline = None
    _restore_signal_dispositions()
    if os._exit is not _exit_after_delivery:
        os._exit = _exit_after_delivery


_fork.register(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _reset_for_tests() -> None:
    """Forget the exit deadline (tests simulate several exits in one process)."""
    global _exit_deadline
    _exit_deadline = None
