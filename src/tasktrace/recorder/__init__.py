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

The package's modules: :mod:`._harvest` (the recorder, its buffer and harvest thread),
:mod:`._ledger` (what became of every transaction, per reporter), :mod:`._aggregation`
(exact metrics), :mod:`._process` (the process-life hooks above) and :mod:`._threads` (how
tasktrace's threads start and wait).
"""

from __future__ import annotations

from tasktrace.recorder._aggregation import _fold_many as _fold_many
from tasktrace.recorder._aggregation import aggregate
from tasktrace.recorder._harvest import (
    HarvestRecorder,
    Recorder,
    ReporterFactoryFn,
    create_recorder,
)
from tasktrace.recorder._ledger import (
    REASON_AFTER_SHUTDOWN,
    REASON_BUFFER_FULL,
    REASON_SHUTDOWN_TIMEOUT,
)
from tasktrace.recorder._process import SIGTERM_NUDGE_AFTER
from tasktrace.recorder._process import _after_fork_in_child as _after_fork_in_child
from tasktrace.recorder._process import _exit_flush_all as _exit_flush_all
from tasktrace.recorder._process import _reset_for_tests as _reset_for_tests
from tasktrace.recorder._threads import HARVEST_THREAD_NAME, is_harvest_thread

__all__ = [
    "HARVEST_THREAD_NAME",
    "REASON_AFTER_SHUTDOWN",
    "REASON_BUFFER_FULL",
    "REASON_SHUTDOWN_TIMEOUT",
    "SIGTERM_NUDGE_AFTER",
    "HarvestRecorder",
    "Recorder",
    "ReporterFactoryFn",
    "aggregate",
    "create_recorder",
    "is_harvest_thread",
]
