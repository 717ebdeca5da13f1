"""What a reporter receives and returns: the ``Reporter`` protocol, ``Batch`` and ``ExportResult``.

The recorder decides *when* to send (every ``harvest_interval``, on ``flush()`` and at exit);
a reporter decides *how* (SQLite, OTLP/HTTP, a file). This split follows OpenTelemetry's
``BatchSpanProcessor`` / ``SpanExporter``: a reporter only ever sees whole batches, from one
thread at a time (the harvest thread), and never raises for an ordinary delivery failure --
it says so in its :class:`ExportResult` instead.

Nothing here imports anything heavy: reporters import ``sqlite3`` or ``httpx`` themselves,
lazily.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import (
    TYPE_CHECKING,
    Callable,
    NamedTuple,
    Optional,
    Protocol,
    Set,
    Tuple,
    Union,
    runtime_checkable,
)

# The aggregates and drop counts a batch carries are plain data, defined with the records
# (the store reads them too, and must not depend on the reporters); re-exported here, where
# reporter authors look for them.
from tasktrace.records import EMPTY_METRICS as EMPTY_METRICS
from tasktrace.records import DropCount as DropCount
from tasktrace.records import MetricKey as MetricKey
from tasktrace.records import MetricStats as MetricStats
from tasktrace.records import TransactionRecord

if TYPE_CHECKING:
    from tasktrace.config import Settings


class Deadline:
    """When an export must end, as a ``time.monotonic()`` value (None: no deadline).

    The recorder may bring it forward while an export runs -- the process is exiting, or
    ``flush(timeout)`` was called -- which also wakes a reporter waiting in :meth:`sleep`
    (between retries) if its wait no longer fits before the new deadline, so the harvest
    thread comes back in time for the final delivery.
    """

    __slots__ = ("_at", "_moved")

    def __init__(self, at: Optional[float] = None) -> None:
        self._at = at
        self._moved = threading.Condition(threading.Lock())

    @property
    def at(self) -> Optional[float]:
        """The deadline, or None."""
        return self._at

    def bring_forward(self, at: float) -> None:
        """Make the deadline ``at`` if that is sooner, waking any :meth:`sleep`."""
        with self._moved:
            if self._at is None or at < self._at:
                self._at = at
                self._moved.notify_all()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; return early only when the deadline is (or is brought) before
        the end of the wait, so a retry delay such as ``Retry-After`` is honoured in full
        whenever there is time for it.
        """
        end = time.monotonic() + seconds
        with self._moved:
            while True:
                left = end - time.monotonic()
                at = self._at
                if left <= 0 or (at is not None and at < end):
                    return
                # A bring_forward() that still leaves room for the wait wakes us too: the
                # loop then simply waits for the rest (a set-once Event would instead end
                # this and every later wait at once, retrying in a tight loop).
                self._moved.wait(min(left, threading.TIMEOUT_MAX))

    def __repr__(self) -> str:
        return f"Deadline({self._at!r})"


class CommitGate:
    """Keeps a reporter's last write and the recorder's exit warning from crossing.

    At exit the recorder waits for the final delivery at most ``shutdown_timeout``, then
    says what was not delivered. A write still under way then (another process held the
    store's lock until the last moment) could commit just after that was said, and the
    same transactions would be both stored and said lost. So a reporter that can make
    its write all-or-nothing commits through :meth:`commit`, and the recorder calls
    :meth:`close` before it speaks: from then on no commit happens, and it learns which
    reporters committed without the recorder having heard of it yet.
    """

    __slots__ = ("_closed", "_lock", "_unsettled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._unsettled: Set[str] = set()

    def commit(self, reporter: str, action: Callable[[], object]) -> bool:
        """Run ``action`` (the commit itself) unless the gate is closed; True if it ran."""
        with self._lock:
            if self._closed:
                return False
            action()
            self._unsettled.add(reporter)
            return True

    def settled(self, reporter: str) -> None:
        """The recorder has entered ``reporter``'s answer (what it committed is counted)."""
        with self._lock:
            self._unsettled.discard(reporter)

    def close(self) -> Set[str]:
        """No more commits; returns the reporters whose commits are not yet counted."""
        with self._lock:
            self._closed = True
            return set(self._unsettled)


class Batch(NamedTuple):
    """Everything one harvest delivers."""

    #: The transactions kept in this window, oldest first.
    records: Tuple[TransactionRecord, ...]
    #: Exact aggregates per key for this window (dropped records included).
    metrics: Mapping[MetricKey, MetricStats] = EMPTY_METRICS
    #: Epoch seconds at which the window began and ended.
    window_start: float = 0.0
    window_end: float = 0.0
    #: Drops counted since the previous batch: this window's buffer overflow and the
    #: failures of the previous harvest's exports.
    drops: Tuple[DropCount, ...] = ()
    #: The process that recorded the batch.
    pid: int = 0
    #: When the export must have ended (a flush or exit budget): a ``time.monotonic()``
    #: value or a :class:`Deadline` the recorder may bring forward; None means the
    #: reporter's own timeout alone applies. Read it through :meth:`time_left`.
    deadline: Union[float, Deadline, None] = None
    #: The recorder's :class:`CommitGate`, through which a reporter commits (None: none).
    gate: Optional[CommitGate] = None

    def time_left(self, default: float) -> float:
        """Seconds a reporter may still spend on this batch: ``default`` capped by the
        deadline. Ask again before each attempt: the deadline may move."""
        deadline = self.deadline
        at = deadline.at if isinstance(deadline, Deadline) else deadline
        if at is None:
            return default
        return max(0.0, min(default, at - time.monotonic()))

    def sleep(self, seconds: float) -> None:
        """Wait between retries: ``seconds``, or less if the deadline is brought forward."""
        deadline = self.deadline
        if isinstance(deadline, Deadline):
            deadline.sleep(seconds)
        elif seconds > 0:
            time.sleep(seconds)


class ExportResult(NamedTuple):
    """The outcome of one ``Reporter.export`` (or ``force_flush``/``shutdown``) call.

    The counts are of *transactions*, and they cover everything the reporter held when
    called: the batch handed over plus whatever it kept from earlier harvests, so that
    ``exported + dropped + kept`` equals what it held before plus the batch. A reporter
    whose ``stores_metrics`` is True counts what the batch's exact metrics stand for
    (:func:`transactions_in`), the others count ``batch.records``. The recorder keeps
    one ledger of these, which ``pending()``, ``flush()`` and the exit warning read.

    Truthy when ``success`` is, so it can be returned where a bool is expected
    (``force_flush``).
    """

    success: bool
    #: Transactions delivered by this call (earlier kept ones included).
    exported: int = 0
    #: Transactions given up on by this call (refused by the collector, failed for good,
    #: or kept ones that could not be delivered in time), for the reason ``reason``.
    dropped: int = 0
    #: True if the failure is temporary (the reporter may have kept the batch for later).
    retryable: bool = False
    #: What happened, for the log; never contains credentials.
    message: str = ""
    #: Transactions the reporter holds after this call, to deliver with a later harvest
    #: (all of them, not only this batch's). They are neither delivered nor dropped yet.
    kept: int = 0
    #: One word for why transactions were dropped (or kept), e.g. ``"locked"``; the
    #: recorder says it as ``"<reporter>:<reason>"``. Empty: ``"rejected"`` for a
    #: success that dropped some, ``"export_failed"`` otherwise.
    reason: str = ""

    def __bool__(self) -> bool:
        return self.success


def transactions_in(batch: Batch) -> int:
    """The transactions ``batch`` stands for: the calls its exact metrics count (records
    evicted from a full buffer included), or its records when it carries no metrics."""
    if batch.metrics:
        return sum(stats.calls for stats in batch.metrics.values())
    return len(batch.records)


@runtime_checkable
class Reporter(Protocol):
    """Delivers batches somewhere. Called only from the harvest thread, one call at a time.

    Contract:

    * ``export`` must not raise for delivery failures (it returns a failed
      :class:`ExportResult`); if it raises anyway, the recorder counts the batch as
      dropped for this reporter and carries on with the others.
    * ``export`` should finish by ``batch.deadline`` when one is set: check
      ``batch.time_left()`` before each attempt and wait with ``batch.sleep()``.
    * A reporter must never call instrumented code (its own work is not traced).
    * After ``os.fork()`` the recorder builds fresh reporters in the child from the
      settings; a reporter may also check ``os.getpid()`` itself before reusing
      connections.
    * A reporter that keeps a batch for a later harvest says so in ``ExportResult.kept``;
      ``force_flush`` and ``shutdown`` may return an :class:`ExportResult` too, saying
      what they delivered or gave up on (``shutdown`` must give up on everything it still
      keeps, and say why). Whatever a reporter still keeps after ``shutdown`` is counted
      as dropped.
    * An optional attribute ``stores_metrics = True`` says that the reporter delivers the
      batch's exact metrics, which stand for every transaction of the window, so that a
      record evicted from the recorder's full buffer still counts as delivered by it.
    """

    #: The name used in settings and in drop reasons, e.g. ``"sqlite"``.
    name: str

    def export(self, batch: Batch) -> ExportResult:
        """Deliver ``batch``; see the class docstring for the contract."""
        ...

    def force_flush(self, timeout: Optional[float] = None) -> Union[bool, ExportResult]:
        """Deliver anything the reporter still holds; truthy if nothing is left."""
        ...

    def shutdown(self, timeout: Optional[float] = None) -> Optional[ExportResult]:
        """Release resources (files, connections); exports after this are dropped."""
        ...


class ReporterFactory(Protocol):
    """What an entry point in ``tasktrace.reporters`` must load: ``factory(settings)``."""

    def __call__(self, settings: Settings) -> Reporter:
        """A reporter for ``settings``."""
        ...
