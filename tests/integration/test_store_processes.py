"""Several real processes on one store: the schema-2 upgrade opened by many at once, and
latency histograms merged across processes into exact percentiles."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List

import pytest

from tasktrace import store
from tasktrace.histogram import MAX_RELATIVE_ERROR
from tasktrace.recorder import aggregate
from tasktrace.records import TransactionRecord
from tasktrace.store._packing import _Blocks
from tasktrace.store._schema import _V1, _migrate_1_to_2

pytestmark = pytest.mark.integration

#: A process that waits for the start file, then writes ``harvests`` harvests of ``n``
#: tasks of known durations (seeded) through a real SqliteReporter, many a second.
_WRITER = textwrap.dedent(
    """
    import os, random, sys, time
    from tasktrace.recorder import aggregate
    from tasktrace.records import TransactionRecord
    from tasktrace.reporters.base import Batch
    from tasktrace.reporters.sqlite import SqliteReporter

    path, start_file, seed, harvests, n = sys.argv[1:6]
    rng = random.Random(int(seed))
    while not os.path.exists(start_file):
        time.sleep(0.005)
    reporter = SqliteReporter(path=path, timeout=30.0)
    for h in range(int(harvests)):
        now = time.time()
        records = tuple(
            TransactionRecord(
                "app", "jobs:run", "Function", True, now, d, d, None, os.getpid(), 1,
                (), {}, (), rng.getrandbits(64) + 1, 1,
            )
            for d in (rng.lognormvariate(-6, 1.2) for _ in range(int(n)))
        )
        result = reporter.export(Batch(records, aggregate(records), now - 0.02, now, (), 0))
        assert result.success, result.message
        time.sleep(0.02)
    reporter.shutdown(10.0)
    """
)


def _durations(seed: int, harvests: int, n: int) -> List[float]:
    """The durations writer ``seed`` records (the same draws, in the same order)."""
    rng = random.Random(seed)
    values = []
    for _ in range(harvests):
        for _ in range(n):
            values.append(rng.lognormvariate(-6, 1.2))
            rng.getrandbits(64)
    return values


def _start(tmp_path: Path, script: str, *args: List[str]) -> List[subprocess.Popen[str]]:
    path = tmp_path / "proc.py"
    path.write_text(script)
    return [
        subprocess.Popen(
            [sys.executable, str(path), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in args
    ]


def _finish(procs: List[subprocess.Popen[str]]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def test_two_processes_histograms_merge_into_exact_percentiles(tmp_path: Path) -> None:
    """Two processes write one store at once, rows sampled by the default budget: report
    counts every call, and its p50/p95 are within 0.55% (so 1%) of the exact nearest-rank
    percentiles of all the calls of both."""
    db = str(tmp_path / "two.db")
    start = str(tmp_path / "go")
    harvests, n = 60, 1000
    procs = _start(
        tmp_path,
        _WRITER,
        [db, start, "1", str(harvests), str(n)],
        [db, start, "2", str(harvests), str(n)],
    )
    Path(start).touch()
    _finish(procs)
    every = sorted(_durations(1, harvests, n) + _durations(2, harvests, n))
    (row,) = store.report_rows(db)
    assert row["calls"] == len(every) == 2 * harvests * n
    conn = sqlite3.connect(db)
    (stored,) = conn.execute("SELECT SUM(count) FROM transaction_blocks").fetchone()
    conn.close()
    assert stored < len(every) / 4  # (the rows are a sample; the percentiles are not)
    for key, pct in (("p50_ms", 50), ("p95_ms", 95)):
        exact = store.percentile(every, pct)
        assert exact is not None
        assert row[key] == pytest.approx(exact * 1000.0, rel=MAX_RELATIVE_ERROR * (1 + 1e-9))


def _v2_store(path: str) -> List[TransactionRecord]:
    """A schema-2 store, as version 2 wrote it: blocks and metrics without histograms."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(_V1)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    _migrate_1_to_2(conn)
    conn.execute("INSERT INTO schema_version VALUES (2)")
    now = time.time() - 60
    records = [
        TransactionRecord(
            "app", "jobs:run", "Function", True, now, d / 1000, d / 1000, None, 1, 1,
            (), {}, (), i + 1, i + 1,
        )
        for i, d in enumerate(range(1, 101))
    ]  # fmt: skip
    blocks = _Blocks(1, version=2)
    blocks.add(records, now - 5, now)
    blocks.insert(conn)
    for key, stats in aggregate(records).items():
        conn.execute(
            "INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (key.app, key.name, key.group, now - 5, now, *stats[:6]),
        )
    conn.close()
    return records


#: A process that waits for the start file, opens the store (migrating it) and writes one
#: harvest of 10 tasks of 500 ms each.
_OPENER = textwrap.dedent(
    """
    import os, sys, time
    from tasktrace import store
    from tasktrace.recorder import aggregate
    from tasktrace.records import TransactionRecord
    from tasktrace.reporters.base import Batch

    path, start_file = sys.argv[1:3]
    while not os.path.exists(start_file):
        time.sleep(0.001)
    conn = store.connect(path)
    now = time.time()
    records = tuple(
        TransactionRecord(
            "app", "jobs:run", "Function", True, now, 0.5, 0.5, None, os.getpid(), 1,
            (), {}, (), i + 1, i + 1,
        )
        for i in range(10)
    )
    store.write_batches(conn, [Batch(records, aggregate(records), now - 1, now, (), 0)])
    conn.close()
    """
)


def test_a_schema_2_store_opened_by_many_processes_at_once_is_upgraded_once(
    tmp_path: Path,
) -> None:
    """Six processes open a schema-2 store at the same moment and write to it: it is
    upgraded to schema 3 once, nothing is lost, and report's percentiles combine the old
    windows' stored rows with the new windows' histograms."""
    db = str(tmp_path / "v2.db")
    old = _v2_store(db)
    start = str(tmp_path / "go")
    procs = _start(tmp_path, _OPENER, *([db, start] for _ in range(6)))
    time.sleep(0.3)  # (every process is up and polling for the start file)
    Path(start).touch()
    _finish(procs)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (store.SCHEMA_VERSION,)
        ]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(metrics)")]
        assert columns.count("histogram") == 1
        windows = conn.execute(
            "SELECT COUNT(*), SUM(histogram IS NULL), SUM(count) FROM metrics"
        ).fetchone()
    finally:
        conn.close()
    assert windows == (7, 1, 100 + 60)
    reader = store.connect(db, readonly=True)
    try:
        got = list(store.read_transactions(reader))
    finally:
        reader.close()
    assert [r.trace_id for r in got[:100]] == [r.trace_id for r in old]
    assert len(got) == 160
    (row,) = store.report_rows(db)
    assert row["calls"] == 160
    # The old rows (1..100 ms) and 60 calls of 500 ms: exact p50 = 80 ms, p95 = 500 ms.
    every = sorted([r.duration for r in old] + [0.5] * 60)
    for key, pct in (("p50_ms", 50), ("p95_ms", 95)):
        exact = store.percentile(every, pct)
        assert exact is not None
        assert row[key] == pytest.approx(exact * 1000.0, rel=MAX_RELATIVE_ERROR * (1 + 1e-9))
