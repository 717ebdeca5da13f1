"""Pruning while several processes write one store: no count is lost, no harvest fails
with "database is locked", and the size limit holds (tasktrace.store._retention)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tasktrace import store

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from tasktrace.config import ReporterSettings, Settings
    from tasktrace.recorder import aggregate
    from tasktrace.records import TransactionRecord
    from tasktrace.reporters import sqlite as sqlite_reporter
    from tasktrace.reporters.base import Batch

    sqlite_reporter.MIN_MAX_SIZE = 1      # a tiny store, so that pruning has work to do
    sqlite_reporter.PRUNE_EVERY = 0.0     # and does it after every harvest
    path, batches, per_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    settings = Settings(reporter=ReporterSettings(path=path, max_size=300_000))
    reporter = sqlite_reporter.SqliteReporter(settings)
    for b in range(batches):
        now = time.time()
        records = tuple(
            TransactionRecord("app", f"jobs:n{i % 3}", "Function", True, now, 0.001 * (i % 7 + 1),
                              0.001, None, os.getpid(), 1, (), {}, (), b * 10_000 + i + 1, 1)
            for i in range(per_batch)
        )
        batch = Batch(records, aggregate(records), now - 0.05, now, (), os.getpid(),
                      deadline=time.monotonic() + 10.0)
        result = reporter.export(batch)
        if not result.success:
            print(f"export failed: {result.message}", file=sys.stderr)
            sys.exit(3)
        time.sleep(0.005)
    reporter.shutdown(5.0)
    """
)

PRUNER = textwrap.dedent(
    """
    import sys, time
    from tasktrace import store
    path, seconds = sys.argv[1], float(sys.argv[2])
    conn = store.connect(path, busy_timeout_ms=10_000)
    end = time.monotonic() + seconds
    passes = 0
    while time.monotonic() < end:
        # Two days ahead: every window is old enough to roll up (into hours).
        store.prune(conn, retention=30 * 86400, max_size=300_000,
                    now=time.time() + 2 * 86400, step_rows=5)
        passes += 1
    conn.close()
    print(passes)
    """
)


def test_concurrent_writers_and_pruners_lose_no_count(tmp_path: Path) -> None:
    """Three writers (each pruning after its harvests) and a pruner rolling everything up
    share one store: every export succeeds, the metrics count every call written, and
    the data stays near max_size."""
    path = str(tmp_path / "shared.db")
    store.connect(path).close()
    batches, per_batch = 60, 300
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, str(batches), str(per_batch)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    pruner = subprocess.Popen(
        [sys.executable, "-c", PRUNER, path, "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        assert "locked" not in err
    out, err = pruner.communicate(timeout=120)
    assert pruner.returncode == 0, err
    assert int(out) > 0
    conn = store.connect(path)
    try:
        calls = conn.execute("SELECT SUM(count) FROM metrics").fetchone()[0]
        assert calls == 3 * batches * per_batch
        rolled = conn.execute(
            "SELECT COUNT(*) FROM metrics WHERE window_end - window_start IN (60, 3600)"
        ).fetchone()[0]
        assert rolled > 0
        report = store.prune(conn, retention=30 * 86400, max_size=300_000)
        assert store._retention.used_bytes(conn) <= 300_000 or report.windows
        assert conn.execute("SELECT SUM(count) FROM metrics").fetchone()[0] == calls
    finally:
        conn.close()
