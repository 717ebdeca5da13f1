"""Liveness benchmark: what finding and storing the running tasks costs the harvest thread.

Usage::

    python benchmarks/bench_liveness.py [--repeats 51] [--depth 30]

The instrumented call does nothing for liveness (``benchmarks/peers/run.py`` is the figure
for that); each harvest, the harvest thread walks every thread's stack for frames of the
inlined task wrapper and reads the registry of scope-made transactions. This measures, for
1, 8, 64 and 256 threads each inside a ``@background_task`` call ``--depth`` frames deep
(and, for comparison, as many threads waiting outside any task: the "0 found" rows), the median over ``--repeats`` harvests of:

1. the scan (``Liveness.report``: the stacks, the registry, the overdue check, the
   report), in microseconds of wall time on the harvest thread;
2. writing that report to a real SQLite store (``SqliteReporter.report_running``: the
   upsert of every running entry in one transaction), in microseconds.

A process whose tasks all end within a harvest interval is like a "0 found" row: the scan
runs and finds nothing, and nothing is written. The threads column counts the main thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable, List, Tuple

from tasktrace import background_task
from tasktrace.recorder._liveness import Liveness
from tasktrace.reporters.sqlite import SqliteReporter
from tasktrace.testing import capture_transactions


def _nested(depth: int, then: Callable[[], None]) -> None:
    if depth <= 0:
        then()
    else:
        _nested(depth - 1, then)


@background_task(name="bench-liveness")
def _task(depth: int, release: threading.Event) -> None:
    _nested(depth, release.wait)


def _start(count: int, depth: int, in_task: bool) -> Tuple[threading.Event, List[threading.Thread]]:
    release = threading.Event()
    target = _task if in_task else (lambda d, r: _nested(d, r.wait))
    threads = [
        threading.Thread(target=target, args=(depth, release), daemon=True) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    return release, threads


def _measure(
    repeats: int, liveness: Liveness, reporter: SqliteReporter
) -> Tuple[float, float, int]:
    scans: List[float] = []
    writes: List[float] = []
    found = 0
    for _ in range(repeats):
        start = time.perf_counter()
        report = liveness.report(0.0)
        scans.append(time.perf_counter() - start)
        if report is not None:
            found = len(report.tasks)
            start = time.perf_counter()
            reporter.report_running(report, 5.0)
            writes.append(time.perf_counter() - start)
    write = statistics.median(writes) * 1e6 if writes else 0.0
    return statistics.median(scans) * 1e6, write, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=51, help="harvests timed per row")
    parser.add_argument("--depth", type=int, default=30, help="frames below each task")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {args.repeats} harvests per row, "
        f"tasks {args.depth} frames deep; medians in microseconds"
    )
    print(f"{'threads':>8s} {'found':>8s} {'scan us':>9s} {'store us':>9s}")
    with tempfile.TemporaryDirectory() as folder, capture_transactions():
        reporter = SqliteReporter(path=os.path.join(folder, "bench.db"))
        try:
            for count in (1, 8, 64, 256):
                for in_task in (False, True):
                    release, threads = _start(count, args.depth, in_task)
                    time.sleep(0.05)  # every thread at its wait
                    liveness = Liveness()
                    scan, write, found = _measure(args.repeats, liveness, reporter)
                    release.set()
                    for thread in threads:
                        thread.join()
                    emptied = liveness.report(0.0)  # takes the entries out again
                    if emptied is not None:
                        reporter.report_running(emptied, 5.0)
                    if found != (count if in_task else 0):
                        print(f"the scan found {found} running tasks of {count}", file=sys.stderr)
                        return 1
                    print(f"{count + 1:8d} {found:8d} {scan:9.1f} {write:9.1f}")
        finally:
            reporter.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
