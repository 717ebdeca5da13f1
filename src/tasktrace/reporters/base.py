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

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Optional, Protocol, Tuple, runtime_checkable

from tasktrace.records import TransactionRecord

if TYPE_CHECKING:
    from tasktrace.config import Settings


class MetricKey(NamedTuple):
    """What tasktrace aggregates by: one row per application, task name and group."""

    app: str
    name: str
    group: str


class MetricStats(NamedTuple):
    """Exact aggregates of every transaction of one key in one harvest window.

    These include transactions whose individual records were dropped (buffer full), so
    counts and totals stay exact even when the records themselves could not all be kept.
    """

    #: Transactions finished (not ``count``: that would shadow ``tuple.count``).
    calls: int
    errors: int
    #: Sum of durations, seconds.
    total: float
    #: Shortest duration, seconds.
    min: float
    #: Longest duration, seconds.
    max: float
    #: Sum of squared durations, seconds squared (for a standard deviation).
    sumsq: float

    def merged(self, other: MetricStats) -> MetricStats:
        """The aggregates of both windows together."""
        return MetricStats(
            self.calls + other.calls,
            self.errors + other.errors,
            self.total + other.total,
            min(self.min, other.min),
            max(self.max, other.max),
            self.sumsq + other.sumsq,
        )


class DropCount(NamedTuple):
    """``dropped`` transactions of ``app`` that did not reach some reporter, and why.

    ``reason`` is ``"buffer_full"`` (the recorder's buffer overflowed; the transaction
    still counts in the metrics) or ``"<reporter>:<what>"`` for a reporter that failed or
    was refused, e.g. ``"otlp:rejected"`` or ``"otlp:export_failed"``.
    """

    app: str
    reason: str
    dropped: int


EMPTY_METRICS: Mapping[MetricKey, MetricStats] = MappingProxyType({})


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
    #: ``time.monotonic()`` value by which the export must have ended (a flush or exit
    #: budget); None means the reporter's own timeout alone applies.
    deadline: Optional[float] = None

    def time_left(self, default: float) -> float:
        """Seconds a reporter may spend on this batch: ``default`` capped by the deadline."""
        if self.deadline is None:
            return default
        return max(0.0, min(default, self.deadline - time.monotonic()))


class ExportResult(NamedTuple):
    """The outcome of one ``Reporter.export`` call."""

    success: bool
    #: Transactions delivered.
    exported: int = 0
    #: Transactions given up on (refused by the collector, or failed for good).
    dropped: int = 0
    #: True if the failure is temporary (the reporter may have kept the batch for later).
    retryable: bool = False
    #: What happened, for the log; never contains credentials.
    message: str = ""


@runtime_checkable
class Reporter(Protocol):
    """Delivers batches somewhere. Called only from the harvest thread, one call at a time.

    Contract:

    * ``export`` must not raise for delivery failures (it returns a failed
      :class:`ExportResult`); if it raises anyway, the recorder counts the batch as
      dropped for this reporter and carries on with the others.
    * ``export`` should finish by ``batch.deadline`` when one is set.
    * A reporter must never call instrumented code (its own work is not traced).
    * After ``os.fork()`` the recorder builds fresh reporters in the child from the
      settings; a reporter may also check ``os.getpid()`` itself before reusing
      connections.
    """

    #: The name used in settings and in drop reasons, e.g. ``"sqlite"``.
    name: str

    def export(self, batch: Batch) -> ExportResult:
        """Deliver ``batch``; see the class docstring for the contract."""
        ...

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver anything the reporter still holds; True if nothing is left."""
        ...

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Release resources (files, connections); exports after this are dropped."""
        ...


class ReporterFactory(Protocol):
    """What an entry point in ``tasktrace.reporters`` must load: ``factory(settings)``."""

    def __call__(self, settings: Settings) -> Reporter: ...
