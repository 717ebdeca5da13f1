"""OTLP metrics of every task: what a harvest's exact aggregates add to a process's series,
and their OTLP/HTTP JSON encoding (``ExportMetricsServiceRequest``).

Two metrics, as SPEC section 9 names them:

* ``tasktrace.task.duration`` (unit ``s``): an **exponential histogram** per
  (``task.name``, ``task.group``, ``task.outcome``), built from the recorder's exact
  aggregates (:mod:`tasktrace.recorder._aggregation`), which count every finished task,
  those evicted from a full buffer included. It is the histogram the SQLite store keeps
  (:mod:`tasktrace.histogram`, OTLP's own bucketing at scale 6), sent bucket for bucket:
  nothing is re-bucketed or approximated on the way, its percentiles are within 0.55% at
  any latency (explicit buckets would need a bucket layout guessed in advance, and be
  coarse wherever the guess is wrong), a collector merges the histograms of many processes
  exactly, and Prometheus stores it as a native histogram.
  With ``metrics_histogram = "explicit"``
  (``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=explicit_bucket_histogram``)
  it is an explicit-bucket histogram with the bounds of :data:`EXPLICIT_BOUNDS` instead,
  for the backends that drop exponential ones (the OpenTelemetry Collector's Prometheus
  scrape exporter): each exact bucket is counted under the explicit bucket holding its
  representative value, so count, sum, min and max stay exact and only a task within
  0.55% of a bound may be counted on the wrong side of it.
* ``tasktrace.dropped`` (a monotonic Sum, attribute ``reason``): the transactions whose
  rows did not reach some reporter (``buffer_full``, ``otlp:export_failed``...), from the
  recorder's ledger, as each batch carries them.

:class:`MetricSeries` keeps one process's state. Cumulative temporality (the default)
sends, at every export, the totals since the process started (``startTimeUnixNano`` = the
process's start, :func:`tasktrace.resource.process_start_ns`): an export that fails costs
nothing, since the next one carries the same totals and more, and nothing is ever counted
twice. Delta temporality sends what was added since the last export that was *accepted*
(a failed delta is merged into the next one, with the earlier start time).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping
from typing import Any, Dict, List, Optional, Tuple

from tasktrace._version import __version__
from tasktrace.histogram import Histogram
from tasktrace.records import DropCount, MetricKey, MetricStats
from tasktrace.reporters._otlp_json import _kv
from tasktrace.resource import Resource, process_start_ns

__all__ = [
    "DROPPED_METRIC",
    "DURATION_METRIC",
    "EXPLICIT_BOUNDS",
    "MetricSeries",
    "build_metrics_request",
]

#: The metric names (SPEC section 9).
DURATION_METRIC = "tasktrace.task.duration"
DROPPED_METRIC = "tasktrace.dropped"
#: The upper bounds (seconds, inclusive) of the explicit-bucket histogram: OpenTelemetry's
#: advice for durations up to 10 s, continued to an hour for the long tasks of cron jobs.
EXPLICIT_BOUNDS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
#: OTLP's AggregationTemporality values.
_DELTA, _CUMULATIVE = 1, 2

#: (app, name, group, outcome): one histogram series.
_PointKey = Tuple[str, str, str, str]


class _Point:
    """One histogram series' values: count, sum, min and max (None once unknown), and the
    bucket counts."""

    __slots__ = ("count", "high", "histogram", "low", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.low: Optional[float] = None
        self.high: Optional[float] = None
        self.histogram: Optional[Histogram] = Histogram()

    def add(
        self,
        count: int,
        total: float,
        histogram: Optional[Histogram],
        extremes: Optional[Tuple[float, float]],
        first: bool,
    ) -> None:
        """Add ``count`` calls; ``extremes`` is their exact (min, max) when known."""
        if first and extremes is not None:
            self.low, self.high = extremes
        elif extremes is None:
            # The split of a window's calls by outcome does not say each side's extremes:
            # from then on this series has none (OTLP's min and max are optional).
            self.low = self.high = None
        elif self.low is not None and self.high is not None:
            self.low = min(self.low, extremes[0])
            self.high = max(self.high, extremes[1])
        self.count += count
        self.sum += total
        if histogram is None or self.histogram is None:
            self.histogram = None  # a histogram of only some calls would mislead
        else:
            self.histogram.merge(histogram)


def _split(stats: MetricStats) -> Iterable[Tuple[str, int, float, Any, Any]]:
    """``stats`` by outcome: (outcome, count, sum, histogram, exact extremes or None)."""
    errors = min(stats.errors, stats.calls)
    ok = stats.calls - errors
    both = bool(errors and ok)
    whole = (stats.min, stats.max)
    error_histogram = stats.error_histogram
    if ok:
        histogram = stats.histogram
        if both and histogram is not None:
            histogram = None if error_histogram is None else histogram.without(error_histogram)
        yield "ok", ok, stats.total - stats.error_total, histogram, None if both else whole
    if errors:
        histogram = error_histogram if both else (error_histogram or stats.histogram)
        total = stats.error_total if both else stats.total
        yield "error", errors, total, histogram, None if both else whole


class MetricSeries:
    """One process's metric series, fed by every harvest's exact aggregates and drops.

    Args:
        temporality: ``"cumulative"`` or ``"delta"``.
        start_ns: When the series start (default: when this process started).
        explicit: Send explicit-bucket histograms (:data:`EXPLICIT_BOUNDS`) instead of
            exponential ones.
    """

    def __init__(
        self,
        temporality: str = "cumulative",
        start_ns: Optional[int] = None,
        *,
        explicit: bool = False,
    ) -> None:
        self.delta = temporality == "delta"
        self.explicit = explicit
        #: Where cumulative series start; for delta, where the unsent values start.
        self.start_ns = process_start_ns() if start_ns is None else start_ns
        self._points: Dict[_PointKey, _Point] = {}
        self._dropped: Dict[Tuple[str, str], int] = {}
        #: Transactions added since the last accepted export.
        self.unsent = 0

    def add(self, metrics: Mapping[MetricKey, MetricStats], drops: Iterable[DropCount]) -> int:
        """Add one harvest's aggregates and drops; returns the transactions they count."""
        added = 0
        points = self._points
        for key, stats in metrics.items():
            added += stats.calls
            for outcome, count, total, histogram, extremes in _split(stats):
                point_key = (key.app, key.name, key.group, outcome)
                point = points.get(point_key)
                first = point is None
                if point is None:
                    point = points[point_key] = _Point()
                point.add(count, total, histogram, extremes, first)
        for drop in drops:
            if drop.dropped > 0:
                key2 = (drop.app, drop.reason)
                self._dropped[key2] = self._dropped.get(key2, 0) + drop.dropped
        self.unsent += added
        return added

    def has_data(self) -> bool:
        """Whether there is anything to send."""
        return bool(self._points or self._dropped)

    def accepted(self, time_ns: int) -> None:
        """The export of the values as of ``time_ns`` was accepted by the collector."""
        self.unsent = 0
        if self.delta:
            self._points.clear()
            self._dropped.clear()
            self.start_ns = time_ns

    def discard(self, time_ns: int) -> int:
        """Give up on the unsent values (delta only: a cumulative series keeps them, the
        next export carries them); returns the transactions given up on."""
        if not self.delta:
            return 0
        lost = self.unsent
        self.accepted(time_ns)
        return lost

    def request(
        self, resource: Resource, time_ns: Optional[int] = None
    ) -> Tuple[Dict[str, Any], int]:
        """The ``ExportMetricsServiceRequest`` of the values now, and its ``time_ns``."""
        now = time.time_ns() if time_ns is None else time_ns
        return (
            build_metrics_request(
                self._points,
                self._dropped,
                resource,
                self.start_ns,
                now,
                self.delta,
                explicit=self.explicit,
            ),
            now,
        )


def explicit_counts(histogram: Histogram) -> List[int]:
    """The counts of the explicit buckets of :data:`EXPLICIT_BOUNDS` (one more than the
    bounds: the last is above the highest), each exact bucket counted where its
    representative value falls; zeros go to the first."""
    counts = [0] * (len(EXPLICIT_BOUNDS) + 1)
    counts[0] = histogram.zero_count
    for index, n in histogram.buckets():
        counts[bisect.bisect_left(EXPLICIT_BOUNDS, histogram.representative(index))] += n
    return counts


def _histogram_point(
    key: _PointKey, point: _Point, start_ns: int, now_ns: int, explicit: bool
) -> Dict[str, Any]:
    _app, name, group, outcome = key
    data: Dict[str, Any] = {
        "attributes": [
            _kv("task.name", name),
            _kv("task.group", group),
            _kv("task.outcome", outcome),
        ],
        "startTimeUnixNano": str(start_ns),
        "timeUnixNano": str(now_ns),
        "count": str(point.count),
        "sum": point.sum,
    }
    histogram = point.histogram
    if histogram is not None:
        if explicit:
            data["bucketCounts"] = [str(n) for n in explicit_counts(histogram)]
            data["explicitBounds"] = list(EXPLICIT_BOUNDS)
        else:
            offset, counts = histogram.positive_buckets()
            data["scale"] = histogram.scale
            data["zeroCount"] = str(histogram.zero_count)
            data["positive"] = {"offset": offset, "bucketCounts": [str(n) for n in counts]}
    if point.low is not None and point.high is not None:
        data["min"] = point.low
        data["max"] = point.high
    return data


def build_metrics_request(
    points: Mapping[_PointKey, _Point],
    dropped: Mapping[Tuple[str, str], int],
    resource: Resource,
    start_ns: int,
    now_ns: int,
    delta: bool = False,
    *,
    explicit: bool = False,
) -> Dict[str, Any]:
    """The ``ExportMetricsServiceRequest`` (OTLP JSON, a dict): one ``resourceMetrics``
    per app (``service.name``), each with both metrics' data points of that app; the
    duration is an explicit-bucket histogram if ``explicit``, else an exponential one."""
    temporality = _DELTA if delta else _CUMULATIVE
    by_app: Dict[str, Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]] = {}
    for key, point in points.items():
        by_app.setdefault(key[0], ([], []))[0].append(
            _histogram_point(key, point, start_ns, now_ns, explicit)
        )
    for (app, reason), count in dropped.items():
        by_app.setdefault(app, ([], []))[1].append(
            {
                "attributes": [_kv("reason", reason)],
                "startTimeUnixNano": str(start_ns),
                "timeUnixNano": str(now_ns),
                "asInt": str(count),
            }
        )
    shared = [_kv(name, value) for name, value in resource]
    resource_metrics = []
    for app, (histogram_points, drop_points) in by_app.items():
        metrics: List[Dict[str, Any]] = []
        if histogram_points:
            metrics.append(
                {
                    "name": DURATION_METRIC,
                    "description": "Duration of every finished task, by outcome",
                    "unit": "s",
                    "histogram" if explicit else "exponentialHistogram": {
                        "dataPoints": histogram_points,
                        "aggregationTemporality": temporality,
                    },
                }
            )
        if drop_points:
            metrics.append(
                {
                    "name": DROPPED_METRIC,
                    "description": "Transactions whose records did not reach a reporter",
                    "unit": "{transaction}",
                    "sum": {
                        "dataPoints": drop_points,
                        "aggregationTemporality": temporality,
                        "isMonotonic": True,
                    },
                }
            )
        resource_metrics.append(
            {
                "resource": {"attributes": [_kv("service.name", app), *shared]},
                "scopeMetrics": [
                    {"scope": {"name": "tasktrace", "version": __version__}, "metrics": metrics}
                ],
            }
        )
    return {"resourceMetrics": resource_metrics}
