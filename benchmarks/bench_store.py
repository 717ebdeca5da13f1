"""The cost of storing transactions in SQLite: ns per transaction of ``store.write_batches``.

Usage::

    python benchmarks/bench_store.py [--repeats 5] [--plain 300000] [--traced 30000]

Two batches, each recorded through the real API (``@tasktrace.background_task()``, with
``capture_transactions()`` keeping the records), so the records are laid out in memory as
a worker's are: ``plain`` trivial tasks of one name, and ``traced`` tasks of one name with
10 nested function traces each. Each repeat writes the batch into a fresh database file
(one ``BEGIN IMMEDIATE`` ... ``COMMIT``, as a harvest does, with the packing, the inserts
and the commit included); the best and the median of the repeats are printed, in ns per
transaction. The target for the plain batch is <= 400 ns.

Then the cost of the latency histogram in the harvest thread: a harvest of ``--harvest``
plain tasks is folded into its exact aggregates (``recorder.aggregate``, what the harvest
thread runs per harvest) with and without its histogram's bucketing (the fold hands the
durations over with one list append; the bucketing runs when the histogram is first read,
by the sqlite reporter's write), and the histogram encoded as the store keeps it: the
median over ``--repeats * 20`` harvests of each, in ns per task, and the ratio.

``--store MODULE_FILE`` measures another implementation of ``write_batches`` and
``connect`` (e.g. an older ``store.py`` kept outside the checkout) in the same way.
Results go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from types import ModuleType
from typing import List, Sequence

import tasktrace
from tasktrace import store
from tasktrace.histogram import Histogram
from tasktrace.recorder import aggregate
from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch
from tasktrace.testing import capture_transactions


@tasktrace.background_task(name="plain")
def plain(i: int) -> int:
    return i


@tasktrace.function_trace()
def step(depth: int) -> None:
    if depth:
        step(depth - 1)


@tasktrace.background_task(name="traced")
def traced(i: int) -> None:
    step(9)  # 10 nested traces


def _records(task: object, n: int) -> List[TransactionRecord]:
    with capture_transactions() as records:
        for i in range(n):
            task(i)  # type: ignore[operator]
    return list(records)


def _measure(module: ModuleType, records: Sequence[TransactionRecord], repeats: int) -> List[float]:
    """ns per transaction of each repeat."""
    batch = Batch(tuple(records), aggregate(records), time.time() - 5, time.time(), (), os.getpid())
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            conn = module.connect(os.path.join(tmp, f"bench{repeat}.db"))
            gc.collect()
            started = time.perf_counter()
            written = module.write_batches(conn, [batch])
            elapsed = time.perf_counter() - started
            conn.close()
            assert written == len(records), (written, len(records))
            samples.append(elapsed / len(records) * 1e9)
    return samples


def _histogram_cost(records: Sequence[TransactionRecord], repeats: int) -> None:
    """ns per task of the fold with and without the histogram (see the module docstring)."""
    without: List[float] = []
    with_histogram: List[float] = []
    encoded: List[float] = []
    n = len(records)
    for _ in range(repeats * 20):
        gc.collect()
        started = time.perf_counter()
        metrics = aggregate(records)
        without.append((time.perf_counter() - started) / n * 1e9)
        gc.collect()
        started = time.perf_counter()
        metrics = aggregate(records)
        for stats in metrics.values():
            assert stats.histogram is not None and stats.histogram.count == n
        with_histogram.append((time.perf_counter() - started) / n * 1e9)
        histogram = next(iter(metrics.values())).histogram
        assert isinstance(histogram, Histogram)
        started = time.perf_counter()
        size = len(histogram.to_bytes())
        encoded.append((time.perf_counter() - started) / n * 1e9)
    base, full, enc = (statistics.median(x) for x in (without, with_histogram, encoded))
    sys.stderr.write(
        f"harvest of {n:,} plain tasks, per task: fold {base:,.0f} ns without the histogram, "
        f"{full:,.0f} ns with it (+{full - base:,.0f} ns, x{full / base:.2f}); encoding "
        f"{enc:,.1f} ns ({size} bytes); medians of {len(without)} harvests\n"
    )


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_store_impl", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plain", type=int, default=300_000)
    parser.add_argument("--traced", type=int, default=30_000)
    parser.add_argument("--harvest", type=int, default=5_000)
    parser.add_argument("--store", metavar="MODULE_FILE", help="measure this store module")
    args = parser.parse_args()
    module = _load(args.store) if args.store else store
    cases = (
        ("plain tasks", _records(plain, args.plain)),
        ("tasks with 10 traces", _records(traced, args.traced)),
    )
    for label, records in cases:
        samples = _measure(module, records, args.repeats)
        sys.stderr.write(
            f"{module.__file__}: {len(records):,} {label}: best {min(samples):,.0f} ns, "
            f"median {statistics.median(samples):,.0f} ns per transaction "
            f"({args.repeats} repeats)\n"
        )
    _histogram_cost(cases[0][1][: args.harvest], args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
