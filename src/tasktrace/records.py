"""The immutable records of finished work that reporters receive.

A live :class:`~tasktrace.transaction.Transaction` is mutable while it runs; when it ends it
is frozen into a :class:`TransactionRecord`. Records are named tuples: immutable, slotted
(``__slots__ = ()``) and cheap to build, which matters because one is built per task on the
instrumented call's own thread. Everything that costs more (hex ids, JSON, SQL) is computed
later, in the harvest thread.

Times are seconds as floats: ``start`` is epoch time (``time.time()``), durations come from
``time.perf_counter()``.

The exact aggregates of a harvest window (:class:`MetricKey`, :class:`MetricStats`) and its
drop counts (:class:`DropCount`) are plain data as well, defined here so that the store can
read them without depending on the reporters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Tuple, Union

if TYPE_CHECKING:  # (a leaf module: the histogram's own methods merge it)
    from tasktrace.histogram import Histogram

#: The value types a custom attribute may hold.
AttributeValue = Union[str, int, float, bool]

#: An empty read-only mapping shared by every record without custom attributes.
EMPTY_ATTRIBUTES: Mapping[str, AttributeValue] = MappingProxyType({})


class ErrorRecord(NamedTuple):
    """An exception recorded in a transaction."""

    #: ``"module:Class"``, e.g. ``"builtins:ValueError"``.
    type: str
    #: ``str(exception)``.
    message: str
    #: The formatted traceback, as ``traceback.format_exception`` prints it.
    traceback: str
    #: Epoch seconds at which the error was recorded.
    timestamp: float


class SegmentRecord(NamedTuple):
    """A finished function trace inside a transaction."""

    name: str
    group: str
    #: Seconds from the transaction's start to the segment's start.
    start: float
    #: Seconds the segment lasted.
    duration: float
    #: Index of the parent segment in ``TransactionRecord.segments``; -1 for the
    #: transaction itself.
    parent: int


class TransactionRecord(NamedTuple):
    """A finished transaction, as handed to the recorder and the reporters."""

    app: str
    name: str
    group: str
    #: True for background tasks; False for a web transaction that stayed one.
    background: bool
    #: Epoch seconds at which the transaction began.
    start: float
    #: Seconds from start to end.
    duration: float
    #: ``duration`` minus the durations of the direct child segments.
    exclusive: float
    #: CPU seconds spent by the thread that ran the transaction, between start and end;
    #: None unless the ``cpu_time`` setting is on.
    cpu_time: Optional[float]
    pid: int
    thread_id: int
    #: Every error recorded, in order; the one that ended the transaction is last.
    errors: Tuple[ErrorRecord, ...]
    attributes: Mapping[str, AttributeValue]
    segments: Tuple[SegmentRecord, ...]
    #: W3C trace id: a random non-zero 128-bit integer.
    trace_id: int
    #: W3C span id of the transaction's root span: a random non-zero 64-bit integer.
    span_id: int
    #: Segments not kept because the transaction reached its segment limit.
    dropped_segments: int = 0
    #: W3C span id of the span this transaction continues (the producer's, for a job
    #: enqueued inside another transaction), or None for a trace's root.
    parent_span_id: Optional[int] = None

    @property
    def error(self) -> Optional[ErrorRecord]:
        """The last recorded error (the one that ended the transaction), or None."""
        return self.errors[-1] if self.errors else None

    @property
    def trace_id_hex(self) -> str:
        """The trace id as 32 lowercase hex digits (W3C / OTLP JSON form)."""
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        """The span id as 16 lowercase hex digits (W3C / OTLP JSON form)."""
        return f"{self.span_id:016x}"

    @property
    def parent_span_id_hex(self) -> Optional[str]:
        """The parent span id as 16 lowercase hex digits, or None for a root."""
        return None if self.parent_span_id is None else f"{self.parent_span_id:016x}"

    @property
    def metric_name(self) -> str:
        """``"<group>/<name>"``, the key tasktrace aggregates by within an app."""
        return f"{self.group}/{self.name}"


def _column(name: str) -> itemgetter[Any]:
    return itemgetter(TransactionRecord._fields.index(name))


# Column readers for the delivery path, which handles records by the thousand in the
# harvest thread (sharing the GIL with the program): ``map(reader, records)`` runs in C,
# and ``itemgetter`` reads a tuple field at a third of the cost of ``attrgetter``.
app_of = _column("app")
name_of = _column("name")
group_of = _column("group")
duration_of = _column("duration")
#: An errorless record's ``errors`` is always the empty tuple (so ``list.count(())``
#: counts them in C).
errors_of = _column("errors")
#: The (app, name, group) key that aggregates and samples are kept by.
task_key_of = itemgetter(*(TransactionRecord._fields.index(f) for f in ("app", "name", "group")))


def same_task(records: Sequence[TransactionRecord]) -> bool:
    """True if every record of non-empty ``records`` has the first one's app, name and group.

    The delivery path asks this of every harvest (usually one task name per chunk); the
    check is column by column, in C, without building a key per record.
    """
    count = len(records)
    for column in (app_of, name_of, group_of):
        values = list(map(column, records))
        if values.count(values[0]) != count:
            return False
    return True


# -- what a harvest aggregates: exact per-key statistics and drop counts -----------------


class MetricKey(NamedTuple):
    """What tasktrace aggregates by: one row per application, task name and group."""

    app: str
    name: str
    group: str


class MetricStats(NamedTuple):
    """Exact aggregates of every transaction of one key in one harvest window.

    These include transactions whose individual records were dropped (buffer full), so
    counts and totals stay exact even when the records themselves could not all be kept.
    ``histogram`` holds the duration of every one of them as well (to 0.55%, see
    :mod:`tasktrace.histogram`): the window's exact percentiles, mergeable across windows
    and processes. Treat it as immutable once the stats are built (:meth:`merged` makes
    a new one).
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
    #: Every duration, seconds, in an exponential histogram; None when unknown (stats
    #: built without one, or merged with such stats: a histogram of only some of the
    #: calls would give wrong percentiles).
    histogram: Optional[Histogram] = None
    #: Sum of the durations of the errored calls alone, seconds.
    error_total: float = 0.0
    #: The durations of the errored calls alone (None when there were none, or when
    #: unknown: then ``errors`` is not 0); ``histogram`` minus this one is the errorless
    #: calls' histogram, so OTLP's ``task.outcome`` splits are exact too.
    error_histogram: Optional[Histogram] = None

    def merged(self, other: MetricStats) -> MetricStats:
        """The aggregates of both windows together (histograms included)."""
        mine, theirs = self.histogram, other.histogram
        return MetricStats(
            self.calls + other.calls,
            self.errors + other.errors,
            self.total + other.total,
            min(self.min, other.min),
            max(self.max, other.max),
            self.sumsq + other.sumsq,
            None if mine is None or theirs is None else mine.merged(theirs),
            self.error_total + other.error_total,
            _merged_errors(self, other),
        )


def _merged_errors(first: MetricStats, second: MetricStats) -> Optional[Histogram]:
    """The error histogram of both, None if either has errors without one."""
    if (first.errors and first.error_histogram is None) or (
        second.errors and second.error_histogram is None
    ):
        return None
    mine, theirs = first.error_histogram, second.error_histogram
    if mine is None or theirs is None:
        return mine if theirs is None else theirs
    return mine.merged(theirs)


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


# -- liveness (SPEC section 7) ---------------------------------------------------------


class RunningTask(NamedTuple):
    """A background task of this process that has been open for a harvest interval."""

    app: str
    name: str
    group: str
    thread_id: int
    trace_id: int
    span_id: int
    #: Epoch seconds at which it started.
    start: float
    #: Its target's ``max_duration`` in seconds, if one is set.
    max_duration: Optional[float]


class RunningReport(NamedTuple):
    """What one harvest says about this process's running tasks."""

    host: str
    pid: int
    #: ``/proc`` start time of the process (clock ticks since boot), to tell a reused
    #: pid from this process; None where it cannot be read.
    pid_start: Optional[int]
    #: Epoch seconds of this report; the entries' ``last_seen``.
    now: float
    #: The harvest interval, so readers know when an entry has gone stale.
    interval: float
    tasks: Tuple[RunningTask, ...]


class ScheduleEntry(NamedTuple):
    """A scheduled target as recorded in the store, so ``check`` knows it."""

    app: str
    name: str
    schedule: str
    grace: Optional[float]
    timezone: Optional[str]
    max_duration: Optional[float]
