"""How fast the SQLite store grows, in MB per hour, with default settings.

Usage::

    python benchmarks/bench_growth.py [--warmup 10] [--seconds 30] [--repeats 3]
        [--case busy|idle|errors]

Each case runs a real worker (a subprocess with this interpreter, the default ``sqlite``
reporter, default settings but for ``TASKTRACE_DB``) for ``--warmup`` then ``--seconds``
seconds. The worker reads the size of its store (the bytes its pages hold, from SQLite's
``dbstat``, as a reader sees the database with its WAL; whole pages in use where ``dbstat``
is missing) when the warm-up ends and again at the end: the
growth between the two, extrapolated to an hour, is the steady pace (the warm-up leaves
out the empty schema's pages and the first slot, which may take a whole minute's budget
at once). Cases:

* ``busy``: one task name called as fast as the worker can (a trivial task with one
  function trace inside), the case the store's row budget exists for; the target is
  <= 4.2 MB/hour (about 100 MB a day).
* ``idle``: one task every 0.5 s: every row is kept.
* ``errors``: an error storm: the busy worker, but every task raises (and is caught).

The tasks run, the rows stored, the metrics windows and the MB/hour are printed per repeat,
then the median of the repeats, on stderr.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
from typing import Dict, List

_WORKER = textwrap.dedent(
    """
    import sys, time
    import tasktrace

    case, warmup, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    import os, sqlite3

    def used():
        conn = sqlite3.connect(os.environ["TASKTRACE_DB"])
        try:
            try:  # the bytes the pages hold (a page is 4 KiB: too coarse for 30 s)
                row = conn.execute("SELECT SUM(pgsize - unused) FROM dbstat").fetchone()
                return row[0]
            except sqlite3.OperationalError:  # no dbstat in this SQLite: whole pages
                pages, free, size = (
                    conn.execute(f"PRAGMA {p}").fetchone()[0]
                    for p in ("page_count", "freelist_count", "page_size")
                )
                return (pages - free) * size
        finally:
            conn.close()

    @tasktrace.function_trace()
    def step(i):
        return i + 1

    @tasktrace.background_task(name="growth:" + case)
    def task(i):
        step(i)
        if case == "errors":
            raise ValueError(f"task {i} failed")

    tasktrace.initialize()
    begin = time.monotonic()
    measured_from = begin + warmup
    end = measured_from + seconds
    calls = 0
    first = None
    while time.monotonic() < end:
        if first is None and time.monotonic() >= measured_from:
            first, first_calls, first_at = used(), calls, time.monotonic()
        for _ in range(1 if case == "idle" else 1000):
            try:
                task(calls)
            except ValueError:
                pass
            calls += 1
        if case == "idle":
            time.sleep(0.5)
    last, last_at = used(), time.monotonic()
    tasktrace.shutdown_agent(30)
    print(last - first, last_at - first_at, calls - first_calls)
    """
)


def _run(case: str, warmup: float, seconds: float) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "growth.db")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
        env["TASKTRACE_DB"] = db
        env["TASKTRACE_APP_NAME"] = "growth"
        script = os.path.join(tmp, "worker.py")
        with open(script, "w") as file:
            file.write(_WORKER)
        proc = subprocess.run(
            [sys.executable, script, case, str(warmup), str(seconds)],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=warmup + seconds + 120,
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        grown, elapsed, measured_calls = (float(x) for x in proc.stdout.split())
        conn = sqlite3.connect(db)
        (rows,) = conn.execute("SELECT COALESCE(SUM(count), 0) FROM transaction_blocks").fetchone()
        (blocks,) = conn.execute("SELECT COUNT(*) FROM transaction_blocks").fetchone()
        calls, windows = conn.execute("SELECT SUM(count), COUNT(*) FROM metrics").fetchone()
        conn.close()
    return {
        "calls": float(calls),
        "rate": measured_calls / elapsed,
        "rows": float(rows),
        "blocks": float(blocks),
        "windows": float(windows),
        "mb_per_hour": grown / 1e6 * 3600.0 / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", choices=("busy", "idle", "errors"), action="append")
    args = parser.parse_args()
    for case in args.case or ("busy", "idle", "errors"):
        results: List[Dict[str, float]] = []
        for _ in range(args.repeats):
            result = _run(case, args.warmup, args.seconds)
            results.append(result)
            sys.stderr.write(
                f"{case}: {result['calls']:,.0f} tasks ({result['rate']:,.0f}/s) in "
                f"{args.warmup + args.seconds:g} s, {result['rows']:,.0f} rows in "
                f"{result['blocks']:,.0f} blocks, {result['windows']:,.0f} metrics windows; "
                f"after the warm-up: {result['mb_per_hour']:.2f} MB/hour\n"
            )
        median = statistics.median(r["mb_per_hour"] for r in results)
        sys.stderr.write(
            f"{case}: median {median:.2f} MB/hour ({median * 24:.0f} MB/day) over "
            f"{args.repeats} runs of {args.seconds:g} s\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
