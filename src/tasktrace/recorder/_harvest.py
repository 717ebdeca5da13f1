"""The harvest recorder: the bounded buffer the instrumented call appends to, and the harvest
thread that drains it into one batch per reporter, entering each reporter's answer in the
ledger (:mod:`tasktrace.recorder._ledger`)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from itertools import repeat, starmap
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Protocol, Set, Tuple

from tasktrace import _clock
from tasktrace._logging import get_logger
from tasktrace._suppress import suppress_instrumentation
from tasktrace.config import Settings
from tasktrace.recorder._aggregation import _AggMap, _fold_many, _merge_agg
from tasktrace.recorder._ledger import (
    REASON_AFTER_SHUTDOWN,
    REASON_BUFFER_FULL,
    Account,
    Ledger,
    View,
)
from tasktrace.recorder._liveness import Liveness
from tasktrace.recorder._process import _LIVE, _install_process_hooks
from tasktrace.recorder._threads import (
    HARVEST_THREAD_NAME,
    _settling_margin,
    _start_without_signals,
    _wait_seconds,
)
from tasktrace.records import (
    TransactionRecord,
    app_of,
)
from tasktrace.reporters.base import (
    Batch,
    Deadline,
    DropCount,
    ExportResult,
    MetricKey,
    MetricStats,
    Reporter,
)

if TYPE_CHECKING:
    pass


logger = get_logger()


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
        self._window_start = time.time()
        self._flush_requested = 0
        self._flush_done = 0
        self._flush_ok = True
        self._flush_deadline: Optional[float] = None
        self._stopping = False
        self._stopped = False
        #: What became of every transaction, per reporter (guarded by self._lock).
        self._ledger = Ledger()
        #: The deadline of the export in progress, which _post() may bring forward.
        self._export_deadline: Optional[Deadline] = None
        self._logged: set[Tuple[str, str]] = set()
        self._warned = False
        #: Running tasks and schedules (SPEC section 7), seen from the harvest thread.
        self._liveness = Liveness()
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
                ledger = self._ledger
                ledger.unharvested_evictions += chunk
                for app, count in Counter(map(app_of, evicted)).items():
                    ledger.add_drop(app, REASON_BUFFER_FULL, count)
            self._wake_early()
        except Exception:  # SPEC 2.8: never raise into the instrumented code
            logger.debug("tasktrace: recording a transaction failed", exc_info=True)

    def _wake_early(self) -> None:
        """Wake the harvest thread before its interval ends (once per harvest)."""
        if not self._wake_pending:
            self._wake_pending = True
            self._wake.set()

    def _count_drop(self, record: TransactionRecord, reason: str) -> None:
        with self._lock:
            self._ledger.add_drop(record.app, reason, 1)

    # -- thread start -----------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the harvest thread now if it is not running (a task began: if it runs
        long, the thread must be there to say so)."""
        if self._thread is None and not self._stopped:
            self._start()

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
            _clock.refresh()  # follow wall-clock adjustments in the records' starts
            try:
                self._cycle()
            except Exception:  # never let the thread die; log once  # noqa: BLE001
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
            self._report_liveness(deadline, final=stopping)
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
                ledger = self._ledger
                for record in late:
                    ledger.add_drop(record.app, REASON_AFTER_SHUTDOWN, 1)
                for key, n in _drops.items():
                    ledger.pending_drops[key] = ledger.pending_drops.get(key, 0) + n
                ledger.unharvested_evictions_lost += ledger.unharvested_evictions
                ledger.unharvested_evictions = 0

    def _report_liveness(self, deadline: Optional[float], *, final: bool) -> None:
        """Tell the reporters that keep them which tasks are running, and (once) which
        targets are scheduled: SPEC section 7. Never fails the harvest."""
        try:
            # (The scan runs whatever the reporters: it also warns about overdue tasks.)
            report = self._liveness.report(self._interval, final=final)
            reporters = [r for r in self._reporters or [] if hasattr(r, "report_running")]
            if not reporters:
                return
            left = self._timeout_until(deadline)
            timeout = 1.0 if left is None else min(1.0, left)
            schedules = self._liveness.schedules(self._settings)
            for reporter in reporters:
                # Optional reporter methods (see SqliteReporter.report_running).
                if schedules and hasattr(reporter, "record_schedules"):
                    getattr(reporter, "record_schedules")(schedules, timeout)  # noqa: B009
                if report is not None:
                    getattr(reporter, "report_running")(report, timeout)  # noqa: B009
        except Exception:  # noqa: BLE001 - liveness must never stop deliveries (logged once)
            self._log_once("recorder", "reporting running tasks failed", exc_info=True)

    def _timeout_until(self, deadline: Optional[float]) -> Optional[float]:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _flush_reporter(self, reporter: Reporter, deadline: Optional[float]) -> bool:
        """``reporter.force_flush``, in isolation; its answer is entered in the ledger."""
        try:
            result = reporter.force_flush(self._timeout_until(deadline))
        except Exception as exc:  # noqa: BLE001 - a reporter's failure must not stop the others (logged once)
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
        except Exception as exc:  # noqa: BLE001 - a reporter's failure must not stop the others (logged once)
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
            drops = self._ledger.take_drops()
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
            ledger = self._ledger
            drops = ledger.take_drops()
            evictions, ledger.unharvested_evictions = ledger.unharvested_evictions, 0
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
            gate=self._ledger.gate,
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
        except Exception as exc:  # noqa: BLE001 - a reporter's failure is counted as its loss, never raised
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

    # -- the ledger (tasktrace.recorder._ledger) ---------------------------------------

    def _account(self, reporter: Optional[Reporter]) -> Account:
        """The account of ``reporter`` (None: no reporter could be built)."""
        name = "" if reporter is None else _name(reporter)
        return self._ledger.account(name, bool(getattr(reporter, "stores_metrics", False)))

    def _settle(
        self,
        reporter: Optional[Reporter],
        result: ExportResult,
        handed: int,
        batch: Optional[Batch] = None,
    ) -> bool:
        """Enter what ``reporter`` answered about the ``handed`` transactions given to it
        (see :meth:`Ledger.settle`); log (once) what it could not take. Returns True if
        everything it held went out."""
        account = self._account(reporter)
        apps: Dict[str, int] = {}
        for record in batch.records if batch is not None else ():
            apps[record.app] = apps.get(record.app, 0) + 1
        with self._lock:
            dropped = self._ledger.settle(
                account, result, handed, apps, self._settings.app_name, self._stopping
            )
            kept = account.kept
        if account.name and (not result.success or dropped):
            self._log_once(account.name, result.message or "export failed")
        return result.success and not dropped and not kept

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
            except Exception as exc:  # noqa: BLE001 - a reporter factory may raise anything; delivery goes on without (logged once)
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
            return dict(self._ledger.drop_totals)

    def pending(self) -> int:
        """Transactions recorded in this process that some reporter has neither delivered
        nor said dropped yet: buffered, being exported, or kept by a reporter for a later
        harvest (the most of any one reporter)."""
        with self._lock:
            return self._ledger.pending(len(self._buffer))

    def undelivered(self, committed: Optional[Set[str]] = None) -> View:
        """Per reporter: (delivered, dropped by reason, pending) transactions, from the
        ledger; for any reporter, delivered + dropped + pending = recorded.

        Args:
            committed: Reporters that committed everything they held (in flight and
                kept) without the ledger having entered it yet (see CommitGate).
        """
        with self._lock:
            return self._ledger.undelivered(len(self._buffer), committed)

    def _warn_at_exit(self) -> None:
        """Say on stderr (through logging), from the ledger, what this process did not
        deliver: one line per reporter, with the reasons; pending transactions count as
        not delivered within ``shutdown_timeout``."""
        if self._warned:
            return
        self._warned = True
        # From here on nothing commits: what is said below is what happened.
        view = self.undelivered(self._ledger.gate.close())
        with self._lock:
            lines = self._ledger.exit_report(view, self._settings.shutdown_timeout, self._pid)
        for line in lines:
            logger.warning("%s", line)

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
