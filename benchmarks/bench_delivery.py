"""Delivery benchmarks: sustained throughput with the sqlite reporter, and memory with the
OTLP endpoint down.

Usage::

    python benchmarks/bench_delivery.py [--repeats 5] [--tasks 300000] [--rss-tasks 1000000]

1. Throughput: one thread calls a ``@tasktrace.background_task()`` function N times with
   the sqlite reporter on, then ``tasktrace.flush()``; the figure is N divided by the
   whole time, so the harvest thread's aggregation and SQLite writes (which share the GIL
   with the caller) are included. Target: >= 150,000 tasks/s. How many rows were stored
   and how many dropped for a full buffer (exact, still in the metrics) is printed too.
2. Memory: 1,000,000 tasks with ``reporter = otlp`` pointing at a closed port; the figure
   is the growth of RSS from after a warm-up to the end. Target: <= 20 MiB.

Each repeat runs in a fresh interpreter; the median is printed. Results go to stderr
(tasktrace writes nothing to stdout, and neither do its tools unless asked for data).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _child_throughput(n: int) -> Dict[str, Any]:
    import tasktrace

    @tasktrace.background_task()
    def task(i: int) -> int:
        return i

    for i in range(1000):  # warm-up: recorder, harvest thread, database
        task(i)
    tasktrace.flush(10.0)
    started = time.perf_counter()
    for i in range(n):
        task(i)
    tasktrace.flush(30.0)
    elapsed = time.perf_counter() - started
    conn = sqlite3.connect(os.environ["TASKTRACE_DB"])
    rows = conn.execute("SELECT SUM(count) FROM transaction_blocks").fetchone()[0] - 1000
    calls = conn.execute("SELECT SUM(count) FROM metrics").fetchone()[0] - 1000
    dropped = conn.execute("SELECT COALESCE(SUM(count), 0) FROM drops").fetchone()[0]
    conn.close()
    return {"rate": n / elapsed, "rows": rows, "calls": calls, "dropped": dropped}


def _child_rss(n: int) -> Dict[str, Any]:
    import tasktrace

    @tasktrace.background_task()
    def task(i: int) -> int:
        return i

    for i in range(20_000):
        task(i)
    time.sleep(0.5)
    before = _rss_bytes()
    started = time.perf_counter()
    for i in range(n):
        task(i)
    after = _rss_bytes()
    return {"growth": after - before, "rate": n / (time.perf_counter() - started)}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_child(mode: str, n: int, env: Dict[str, str]) -> Dict[str, Any]:
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--tasks", str(n), "--out", out],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr}")
    with open(out) as fh:
        result: Dict[str, Any] = json.load(fh)
    os.unlink(out)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=300_000)
    parser.add_argument("--rss-tasks", type=int, default=1_000_000)
    parser.add_argument("--child", choices=("throughput", "rss"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        func = _child_throughput if args.child == "throughput" else _child_rss
        with open(args.out, "w") as fh:
            json.dump(func(args.tasks), fh)
        return 0

    base = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    base["TASKTRACE_APP_NAME"] = "bench"
    rates: List[float] = []
    details: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            env = dict(base, TASKTRACE_DB=os.path.join(tmp, f"bench{repeat}.db"))
            result = _run_child("throughput", args.tasks, env)
            rates.append(result["rate"])
            details.append(result)
    median = statistics.median(rates)
    print_ = sys.stderr.write
    print_(
        f"throughput (sqlite reporter, 1 thread, {args.tasks:,} tasks, median of "
        f"{args.repeats}): {median:,.0f} tasks/s  [target >= 150,000]\n"
    )
    for result in details:
        print_(
            f"  run: {result['rate']:,.0f} tasks/s; metrics counted {result['calls']:,}, "
            f"rows stored {result['rows']:,}, dropped (buffer full, in metrics) "
            f"{result['dropped']:,}\n"
        )

    growths: List[float] = []
    for _ in range(max(1, min(args.repeats, 3))):
        env = dict(
            base,
            TASKTRACE_REPORTER="otlp",
            TASKTRACE_OTLP_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        )
        growths.append(_run_child("rss", args.rss_tasks, env)["growth"])
    print_(
        f"RSS growth over {args.rss_tasks:,} tasks, OTLP endpoint down (median of "
        f"{len(growths)}): {statistics.median(growths) / 2**20:.1f} MiB  [target <= 20 MiB]\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
