"""Quick tasktrace-only runs of the peer benchmark (``benchmarks/peers/``), so regressions
in the per-call cost, throughput or start-up are easy to see: ``pytest -m benchmark -s``.

They run the benchmark's own worker (``benchmarks/peers/_worker.py``) with this interpreter,
no peers' virtualenv, a few thousand calls each, and print the figures. They assert only
that the figures are sane and that every task was really recorded, never on timings.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

pytestmark = pytest.mark.benchmark

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "benchmarks" / "peers" / "_worker.py"


def _env(tmp_path: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    env["TASKTRACE_DB"] = str(tmp_path / "bench.db")
    env["TASKTRACE_APP_NAME"] = "bench-smoke"
    return env


def _worker(tmp_path: Path, mode: str, *args: str) -> Dict[str, Any]:
    out = tmp_path / f"{mode}.json"
    proc = subprocess.run(
        [sys.executable, str(WORKER), mode, "--out", str(out), *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result: Dict[str, Any] = json.loads(out.read_text())
    return result


def test_per_call_cost_of_tasks_is_printed_and_every_task_recorded(tmp_path: Path) -> None:
    """Per-call cost of a task, a task with 10 traces and a disabled task; all recorded."""
    result = _worker(
        tmp_path, "percall", "--peers", "tasktrace", "--repeats", "5", "--sample-ms", "3"
    )
    rows = {v["kind"]: v for v in result["variants"]}
    bare, bare10 = rows["bare"]["median_ns"], rows["bare10"]["median_ns"]
    print()
    for v in result["variants"]:
        base = bare10 if v["kind"] == "task10" else bare
        print(
            f"{v['label']:40s} {v['median_ns']:9.0f} ns/call  overhead "
            f"{v['median_ns'] - base:9.0f} ns  ({v['number']} calls x {result['repeats']})"
        )
    for kind in ("task", "task10", "disabled"):
        assert rows[kind]["n_bad"] == 0, rows[kind]["bad_samples"]
        assert rows[kind]["median_ns"] > 0
    totals = result["totals"]["tasktrace"]
    assert totals["tasks_delivered"] == totals["tasks_expected"] > 0
    assert totals["spans_delivered"] == totals["spans_expected"] > 0
    # Rows are a sample per task name and minute (max_rows_per_name); the counts above
    # are exact.
    assert 0 < totals["rows"] <= totals["tasks_delivered"]
    assert result["blocked_connections"] == []


@pytest.mark.parametrize("peer", ["tasktrace", "tasktrace-lossless"])
def test_throughput_with_sqlite_delivery_is_printed_and_every_task_counted(
    tmp_path: Path, peer: str
) -> None:
    """Tasks per second including the final flush to SQLite; every task is counted in the
    metrics, and with every row stored (the lossless variant) every task is in the file."""
    result = _worker(tmp_path, "throughput", "--peer", peer, "--tasks", "5000")
    print(
        f"\nthroughput ({peer}): {result['rate']:,.0f} tasks/s over {result['tasks']:,} tasks "
        f"(flush included); RSS growth {result['rss_growth'] / 2**20:.1f} MiB; "
        f"rows stored {result['rows']:,}"
    )
    assert result["delivered"] == result["tasks"] == 5000
    if peer == "tasktrace-lossless":
        assert result["rows"] == 5000
    else:
        # Rows are budgeted per task name and minute: the warm-up has spent the minute's
        # budget, so a run of a fraction of a second may store none; never more.
        from tasktrace.config._settings import DEFAULT_MAX_ROWS_PER_NAME

        assert 0 <= result["rows"] <= DEFAULT_MAX_ROWS_PER_NAME
    assert result["rate"] > 0


def test_start_up_cost_of_the_launcher_is_printed(tmp_path: Path) -> None:
    """``tasktrace-admin run-program python -c pass`` against bare ``python -c pass``."""
    config = tmp_path / "tasktrace.toml"
    config.write_text('[[background_task]]\nfunction = "never_imported.jobs:run"\n')
    env = _env(tmp_path)
    bare = [sys.executable, "-c", "pass"]
    admin = [sys.executable, "-m", "tasktrace", "run-program", "--config", str(config), *bare]
    samples: Dict[str, List[float]] = {"bare": [], "run-program": []}
    for _ in range(6):
        for label, cmd in (("bare", bare), ("run-program", admin)):
            started = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL)
            samples[label].append((time.perf_counter() - started) * 1000)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(
        f"\nstart-up: python -c pass {med['bare']:.1f} ms; under run-program "
        f"{med['run-program']:.1f} ms (+{med['run-program'] - med['bare']:.1f} ms)"
    )
    assert med["run-program"] > 0
