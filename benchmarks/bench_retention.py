"""The store over a month: pruning's cost per step and ``report --since 30d`` on 30 days of
rolled-up metrics.

Run: ``python benchmarks/bench_retention.py [--names 10] [--days 30] [--repeats 15]``

Builds, through the store's own write path, the metrics a month of ``--names`` busy task
names harvested every 5 seconds leaves once pruned (the last 15 minutes in harvest
windows, the 6 hours before in minutes, the rest of ``--days`` in hours; each window with
its latency histogram), plus 15 minutes of harvest windows just past 15 minutes old. Pruning rolls that hour
up: the figures are the rows merged, the median and worst time of one prune step (how
long another process's harvest may wait for it), and the median time of ``report --since
30d`` and ``--since 1h`` over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import List

from tasktrace import store
from tasktrace.histogram import Histogram
from tasktrace.records import MetricKey, MetricStats
from tasktrace.reporters.base import Batch

DAY = 86400.0
INTERVAL = 5.0


def build(path: str, names: int, days: int, end: float) -> int:
    """Write, for ``names`` names, what a month of 5-second harvests leaves once pruned:
    harvest windows for the last 30 minutes (the older half is due to be rolled up),
    minute windows for the 6 hours before, hour windows for the rest of ``days``.
    Each window holds 100 calls and their histogram."""
    conn = store.connect(path)
    pid = os.getpid()
    histogram = Histogram.of([0.001 + 0.0002 * i for i in range(100)])
    stats = MetricStats(100, 1, 0.5, 0.001, 0.0208, 0.004, histogram)
    spans = [
        (INTERVAL, end - 1800, end),
        (60.0, end - 6 * 3600, end - 1800),
        (3600.0, end - days * DAY, end - 6 * 3600),
    ]
    written = 0
    chunk: List[Batch] = []
    for width, first, last in spans:
        window_end = first + width
        while window_end <= last:
            metrics = {
                MetricKey("worker", f"jobs:task{n}", "Function"): stats for n in range(names)
            }
            chunk.append(Batch((), metrics, window_end - width, window_end, (), pid))
            window_end += width
            if len(chunk) == 2000:
                store.write_batches(conn, chunk)
                written += len(chunk) * names
                chunk = []
    if chunk:
        store.write_batches(conn, chunk)
        written += len(chunk) * names
    conn.close()
    return written


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    end = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "month.db")
        started = time.perf_counter()
        rows = build(path, args.names, args.days, end)
        built = time.perf_counter() - started
        conn = store.connect(path)
        steps: List[float] = []
        total = store.PruneReport()
        while True:
            step_start = time.perf_counter()
            part = store.prune(conn, retention=31 * DAY, max_size=1 << 40, now=end, budget=0.0)
            # budget=0 runs one step (then says unfinished): the unit another writer waits for
            steps.append(time.perf_counter() - step_start)
            total = total.plus(part)
            if not part.unfinished:
                break
        left = conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        size = store.file_bytes(conn)
        conn.close()
        timings = {}
        for since in ("30d", "1h"):
            samples = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                store.report_rows(path, since_seconds=store.parse_since(since), now=end)
                samples.append(time.perf_counter() - t)
            timings[since] = statistics.median(samples)
    print(f"python {sys.version.split()[0]}; {args.names} names, {args.days} days")
    print(
        f"built {rows:,} windows in {built:.1f} s; rolled up {total.rolled_up:,} into {left:,} rows"
    )
    print(
        f"prune steps: {len(steps):,}, median {statistics.median(steps) * 1000:.2f} ms, "
        f"worst {max(steps) * 1000:.2f} ms; file {size / 1024**2:.1f} MiB"
    )
    for since, seconds in timings.items():
        print(f"report --since {since}: median {seconds * 1000:.1f} ms of {args.repeats}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
