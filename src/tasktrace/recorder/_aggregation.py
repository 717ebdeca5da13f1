"""Exact aggregation: per (app, name, group), the count, errors, total, min, max, sum of
squares and latency histogram of every transaction, kept or evicted, computed in C where it
can be."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress
from operator import mul
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

from tasktrace.histogram import Histogram
from tasktrace.records import (
    TransactionRecord,
    duration_of,
    errors_of,
    same_task,
    task_key_of,
)
from tasktrace.reporters.base import (
    MetricKey,
    MetricStats,
)

# (Imported here, not lazily in the threads that use it: a fork while another thread is
# importing a module leaves the child with a half-initialised module it can never import.)

if TYPE_CHECKING:
    pass


# Aggregates while they are being built: [count, errors, total, min, max, sumsq, histogram,
# error_total, error_histogram] (the last two: of the errored calls alone, so that OTLP's
# ``task.outcome`` can split the histogram exactly; None until an error is seen).
# A list is cheaper to update in place than rebuilding a NamedTuple per record.
_Agg = List[Any]
_AggMap = Dict[Tuple[str, str, str], _Agg]


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
        error_lists = list(map(errors_of, group_records))
        errors = count - error_lists.count(())
        total = sum(durations)
        low = min(durations)
        high = max(durations)
        sumsq = sum(map(mul, durations, durations))
        agg = aggs.get(key)
        if agg is None:
            histogram = Histogram()
            histogram.add_later(durations)
            agg = aggs[key] = [count, errors, total, low, high, sumsq, histogram, 0.0, None]
            if errors:
                _fold_errors(agg, durations, error_lists)
            continue
        agg[0] += count
        agg[1] += errors
        agg[2] += total
        if low < agg[3]:
            agg[3] = low
        if high > agg[4]:
            agg[4] = high
        agg[5] += sumsq
        agg[6].add_later(durations)
        if errors:
            _fold_errors(agg, durations, error_lists)


def _fold_errors(agg: _Agg, durations: List[float], error_lists: List[Any]) -> None:
    """Add the durations of the errored calls to ``agg``'s error total and histogram
    (only for chunks with errors, which are rare: errorless chunks pay nothing)."""
    errored = list(compress(durations, error_lists))  # (a non-empty tuple is truthy)
    agg[7] += sum(errored)
    if agg[8] is None:
        agg[8] = Histogram()
    agg[8].add_later(errored)


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
        mine[6].merge(agg[6])
        mine[7] += agg[7]
        if agg[8] is not None:
            if mine[8] is None:
                mine[8] = agg[8]
            else:
                mine[8].merge(agg[8])


def aggregate(records: Sequence[TransactionRecord]) -> Dict[MetricKey, MetricStats]:
    """Exact per-key aggregates of ``records`` (a helper for reporters and tests)."""
    aggs: _AggMap = {}
    _fold_many(aggs, records)
    return {MetricKey(*key): MetricStats(*agg) for key, agg in aggs.items()}
