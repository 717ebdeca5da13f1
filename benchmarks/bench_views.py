"""The read side on a big store: how long ``report``, ``errors``, ``traces``, ``trace ID`` and
the dashboard's ``/api/series`` take on 30 days of a busy worker (the dashboard's other API
routes run the same queries as the commands).

Usage::

    python benchmarks/bench_views.py [--transactions 10000000] [--days 30] [--names 10]
        [--harvest-interval 5] [--error-rate 0.01] [--repeats 5] [--db PATH]

The store is built synthetically through the store's own write path
(``store.write_batches``, a ``Batch`` per harvest as the sqlite reporter writes them, many
harvests per SQL transaction to build faster): ``--transactions`` spread evenly over
``--days`` of harvests ``--harvest-interval`` seconds apart, over ``--names`` task names,
each with three function traces, ``--error-rate`` of them raising one of a few errors
(with a traceback). The harvest interval decides the store's shape: at the default 5 s a
harvest holds few transactions per name, so the store has about one block per
transaction and name and harvest (the most rows per transaction, the hard case for the
reads). The metrics windows are then rolled up as the sqlite reporter's background pruning
would have done as they aged (``--no-prune``: left as written). ``--db PATH`` keeps the
store there (and reuses it if it exists).

Each query runs ``--repeats`` times on a fresh read-only connection (opening included);
the median and best are printed, in ms, to stderr. The target is under 300 ms each.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, List, Tuple

from tasktrace import store
from tasktrace.recorder import aggregate
from tasktrace.records import EMPTY_ATTRIBUTES, ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch

_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/worker/jobs.py", line 42, in {name}\n'
    "    result = handle(payload)\n"
    '  File "/srv/worker/handlers.py", line 117, in handle\n'
    "    raise ValueError(message)\n"
    "ValueError: {message}\n"
)


def build(path: str, args: argparse.Namespace) -> Tuple[int, float]:
    """Write the synthetic store at ``path``; returns (transactions, seconds taken)."""
    rng = random.Random(14)
    names = [f"jobs:task_{i}" for i in range(args.names)]
    harvests = int(args.days * 86400 / args.harvest_interval)
    per_harvest = args.transactions / harvests
    end = time.time()
    begin = end - args.days * 86400
    pid = 4242
    conn = store.connect(path)
    started = time.perf_counter()
    written = 0
    carry = 0.0
    pending: List[Batch] = []
    for h in range(harvests):
        window_start = begin + h * args.harvest_interval
        window_end = window_start + args.harvest_interval
        carry += per_harvest
        n = int(carry)
        carry -= n
        records = []
        for _ in range(n):
            name = names[rng.randrange(args.names)]
            # Durations: log-normal around ~50 ms, a few slow outliers.
            duration = rng.lognormvariate(-3.0, 0.8)
            start = window_start + rng.random() * (args.harvest_interval - duration % 1)
            third = duration / 3.0
            segments = (
                SegmentRecord("db:query", "Function", 0.0, third, -1),
                SegmentRecord("db:fetch", "Function", 0.0, third / 2, 0),
                SegmentRecord("render", "Function", third, third, -1),
            )
            errors: Tuple[ErrorRecord, ...] = ()
            if rng.random() < args.error_rate:
                message = f"bad input {rng.randrange(5)}"
                errors = (
                    ErrorRecord(
                        "builtins:ValueError",
                        message,
                        _TRACEBACK.format(name=name, message=message),
                        start + duration,
                    ),
                )
            records.append(
                TransactionRecord(
                    "billing-worker",
                    name,
                    "Function",
                    True,
                    start,
                    duration,
                    duration - 2 * third,
                    None,
                    pid,
                    1,
                    errors,
                    EMPTY_ATTRIBUTES,
                    segments,
                    rng.getrandbits(128) or 1,
                    rng.getrandbits(64) or 1,
                )
            )
        batch_records = tuple(records)
        pending.append(
            Batch(batch_records, aggregate(batch_records), window_start, window_end, (), pid)
        )
        written += n
        if len(pending) >= 2000 or h == harvests - 1:
            store.write_batches(conn, pending)
            pending = []
    conn.close()
    return written, time.perf_counter() - started


def _time(path: str, query: Callable[[Any], Any], repeats: int) -> List[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        conn = store.connect(path, readonly=True)
        try:
            query(conn)
        finally:
            conn.close()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--names", type=int, default=10)
    parser.add_argument("--harvest-interval", type=float, default=5.0)
    parser.add_argument("--error-rate", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--db", metavar="PATH", help="keep (or reuse) the store here")
    parser.add_argument(
        "--no-prune",
        action="store_true",
        help="leave every harvest window as written (no roll-ups, as no reporter ran)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or os.path.join(tmp, "views.db")
        if not os.path.exists(path):
            written, seconds = build(path, args)
            sys.stderr.write(
                f"built {path}: {written:,} transactions in {seconds:,.0f} s, "
                f"{os.path.getsize(path) / 2**20:,.0f} MiB\n"
            )
            if not args.no_prune:
                # As the sqlite reporter would have done in the background meanwhile: the
                # metrics windows rolled up as they aged (nothing is past retention).
                started = time.perf_counter()
                conn = store.connect(path)
                pruned = store.prune(conn, retention=(args.days + 1) * 86400, max_size=1 << 50)
                conn.close()
                sys.stderr.write(
                    f"rolled up {pruned.rolled_up:,} metrics windows in "
                    f"{time.perf_counter() - started:,.0f} s\n"
                )
        conn = store.connect(path, readonly=True)
        blocks, transactions = conn.execute(
            "SELECT COUNT(*), SUM(count) FROM transaction_blocks"
        ).fetchone()
        error_rows = conn.execute("SELECT COUNT(*) FROM errors").fetchone()[0]
        conn.close()
        sys.stderr.write(
            f"store: {transactions:,} transactions in {blocks:,} blocks, {error_rows:,} errors\n"
        )
        newest = _one(path, lambda conn: store.list_traces(conn, limit=1))[0]["trace_id"]
        oldest = _one(path, lambda conn: store.list_traces(conn, slowest=True, limit=1))
        cases: List[Tuple[str, Callable[[Any], Any]]] = [
            ("report", lambda conn: store.report_rows(path)),
            ("errors", lambda conn: store.error_groups(conn)),
            ("errors --since 1h", lambda conn: store.error_groups(conn, since_seconds=3600)),
            ("traces", lambda conn: store.list_traces(conn)),
            ("traces --slowest", lambda conn: store.list_traces(conn, slowest=True)),
            ("traces --errors", lambda conn: store.list_traces(conn, errors_only=True)),
            (
                "traces --errors --slowest",
                lambda conn: store.list_traces(conn, errors_only=True, slowest=True),
            ),
            (
                "traces --slowest --since 1h",
                lambda conn: store.list_traces(conn, slowest=True, since_seconds=3600),
            ),
            (
                "traces --slowest --since 7d",
                lambda conn: store.list_traces(conn, slowest=True, since_seconds=7 * 86400),
            ),
            (
                "traces --slowest --name jobs:task_3",
                lambda conn: store.list_traces(conn, slowest=True, name_glob="jobs:task_3"),
            ),
            ("ui /api/series", lambda conn: store.series(conn)),
            ("ui /api/series?since=1d", lambda conn: store.series(conn, since_seconds=86400)),
            (
                "ui /api/series?name=jobs:task_3&since=7d",
                lambda conn: store.series(conn, name_glob="jobs:task_3", since_seconds=7 * 86400),
            ),
            (f"trace {newest}", lambda conn: store.find_trace(conn, newest)),
            (
                f"trace {oldest[0]['trace_id'][:8]}",
                lambda conn: _lookup(conn, oldest[0]["trace_id"][:8]),
            ),
        ]
        for label, query in cases:
            samples = _time(path, query, args.repeats)
            sys.stderr.write(
                f"{label}: median {statistics.median(samples):,.1f} ms, "
                f"best {min(samples):,.1f} ms ({args.repeats} repeats)\n"
            )
    return 0


def _lookup(conn: Any, prefix: str) -> Any:
    """``trace PREFIX``: an ambiguous prefix is an answer too (it took the same lookup)."""
    try:
        return store.find_trace(conn, prefix)
    except store.TraceLookupError as exc:
        return exc


def _one(path: str, query: Callable[[Any], Any]) -> Any:
    conn = store.connect(path, readonly=True)
    try:
        return query(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
