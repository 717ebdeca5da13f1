"""Exact accounting under faults (STYLE habit 17): for every real program here, what the
store or the collector holds plus what the process said on stderr it could not deliver
equals the tasks it ran -- exactly, and nothing is said or stored twice."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from _faults import (
    Collector,
    clean_env,
    dead_endpoint,
    run_python,
    said_recorded,
    stored_calls,
    undelivered,
    write_program,
)

pytestmark = pytest.mark.integration

#: Runs N tasks in bursts of 500 with a short pause after each, so that harvests (every
#: 0.2 s) happen while it runs, and the buffer may fill while the harvest thread waits.
_BURSTS = """
import sys, time
import tasktrace

@tasktrace.background_task()
def work(i):
    return i

n = int(sys.argv[1])
for i in range(n):
    work(i)
    if i % 500 == 499:
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.01)
print("done", n)
"""

#: Holds BEGIN EXCLUSIVE on the store until the file ``release`` exists.
_HOLDER = """
import os, sqlite3, sys, time
from tasktrace import store

db, release = sys.argv[1:3]
store.connect(db).close()  # the schema exists before the lock is taken
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
deadline = time.monotonic() + 120
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.02)
conn.execute("COMMIT")
conn.close()
"""


def test_store_locked_for_longer_than_the_program_runs(tmp_path: Path) -> None:
    """Another process holds BEGIN EXCLUSIVE for the whole run of 30,000 tasks at
    harvest_interval = 0.2: nothing can be stored, and stderr says so for every one of
    them, with the reason (kept batches, their metrics and the evicted records alike)."""
    n = 30_000
    db, release = tmp_path / "tasks.db", tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, str(write_program(tmp_path, _HOLDER, "holder.py")), str(db), str(release)],
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        env = clean_env(
            tmp_path, TASKTRACE_HARVEST_INTERVAL="0.2", TASKTRACE_SHUTDOWN_TIMEOUT="2.5"
        )
        # About 6 s of tasks: several harvests wait for the lock and keep their batches.
        run = run_python([str(write_program(tmp_path, _BURSTS)), str(n), "0.1"], env)
    finally:
        release.touch()
        _, holder_err = holder.communicate(timeout=60)
    assert holder.returncode == 0, holder_err
    assert run.returncode == 0 and run.stdout == f"done {n}\n", run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert run.elapsed < 20, run.elapsed  # the exit stayed bounded
    stored = stored_calls(db)
    assert stored + undelivered(run.stderr, "sqlite") == n, run.stderr
    assert stored == 0 and said_recorded(run.stderr, "sqlite") == n, run.stderr
    assert f"{n} of {n} transactions of process" in run.stderr
    assert "(sqlite:locked: " in run.stderr, run.stderr


def test_store_locked_then_released_during_the_run(tmp_path: Path) -> None:
    """The lock goes away while the program still runs: every kept batch (rows sampled,
    metrics exact) is written then; nothing is said lost, every call is stored once."""
    n = 12_000
    db, release = tmp_path / "tasks.db", tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, str(write_program(tmp_path, _HOLDER, "holder.py")), str(db), str(release)],
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        env = clean_env(tmp_path, TASKTRACE_HARVEST_INTERVAL="0.2", TASKTRACE_SHUTDOWN_TIMEOUT="10")
        prog = write_program(tmp_path, _BURSTS)
        proc = subprocess.Popen(
            [sys.executable, str(prog), str(n), "0.1"],  # about 2.4 s of tasks
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.2)
    finally:
        release.touch()
        holder.communicate(timeout=60)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == f"done {n}\n", err
    assert undelivered(err) == 0, err
    assert stored_calls(db) == n


def test_thirty_processes_one_store_at_a_short_interval(tmp_path: Path) -> None:
    """30 processes, each running tasks in bursts at harvest_interval = 0.2, all writing
    one store (records are also evicted from full buffers): the calls stored plus what
    each process said it could not deliver equal the tasks run, exactly."""
    procs, per = 30, 20_000
    db = tmp_path / "shared.db"
    env = clean_env(
        tmp_path,
        TASKTRACE_DB=str(db),
        TASKTRACE_HARVEST_INTERVAL="0.2",
        TASKTRACE_SHUTDOWN_TIMEOUT="2.5",
    )
    prog = write_program(tmp_path, _BURSTS)
    started = time.monotonic()
    running = [
        subprocess.Popen(
            [sys.executable, str(prog), str(per), "0.02"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    said: List[int] = []
    for proc in running:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out == f"done {per}\n", err
        assert "Traceback" not in err, err
        lost = undelivered(err, "sqlite")
        assert lost == 0 or said_recorded(err, "sqlite") == per, err
        if not lost:
            assert "did not finish" not in err, err  # said only when something was lost
        said.append(lost)
    elapsed = time.monotonic() - started
    stored = stored_calls(db)
    print(f"30 writers: stored {stored}, said lost {sum(said)}, {elapsed:.1f} s")
    assert stored + sum(said) == procs * per, (stored, said)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TASKTRACE_SHUTDOWN_TIMEOUT", "1e10"), ("TASKTRACE_HARVEST_INTERVAL", "1e308")],
)
def test_seconds_past_the_wait_limit_are_refused_and_nothing_is_lost(
    tmp_path: Path, variable: str, value: str
) -> None:
    """A huge shutdown_timeout or harvest_interval once lost every task silently (or killed
    the harvest thread): the value is refused with the limit named, and the default in
    its place delivers every task."""
    n = 50
    env = clean_env(tmp_path, **{variable: value})
    run = run_python([str(write_program(tmp_path, _BURSTS)), str(n)], env)
    assert run.returncode == 0 and run.stdout == f"done {n}\n", run.stderr
    assert f"environment variable {variable}: must be at most" in run.stderr, run.stderr
    assert "threading.TIMEOUT_MAX" in run.stderr and "Traceback" not in run.stderr
    assert stored_calls(tmp_path / "tasks.db") == n


# -- OTLP -----------------------------------------------------------------------------


@pytest.fixture
def collector() -> Iterator[Collector]:
    srv = Collector()
    yield srv
    srv.close()


def _otlp_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    return clean_env(
        tmp_path,
        TASKTRACE_REPORTER="otlp",
        TASKTRACE_OTLP_ENDPOINT=endpoint,
        TASKTRACE_HARVEST_INTERVAL="0.2",
        **extra,
    )


def test_otlp_dead_collector_says_every_task_once(tmp_path: Path) -> None:
    """Nothing listens: every task is said not delivered, none twice, with the reason."""
    n = 5_000
    env = _otlp_env(tmp_path, dead_endpoint(), TASKTRACE_SHUTDOWN_TIMEOUT="1.5")
    run = run_python([str(write_program(tmp_path, _BURSTS)), str(n)], env)
    assert run.returncode == 0, run.stderr
    assert undelivered(run.stderr, "otlp") == n, run.stderr
    assert said_recorded(run.stderr, "otlp") == n, run.stderr
    # (Refused, or -- on a loaded machine, still connecting when the budget ended --
    # pending: said either way, once.)
    assert "otlp:export_failed" in run.stderr or "(shutdown_timeout: " in run.stderr


def test_otlp_refusals_then_accepting_hold_the_equation(
    tmp_path: Path, collector: Collector
) -> None:
    """A collector that refuses its first requests (400, 503, 400), then accepts, behind
    a program faster than it (so the small buffer overflows): spans accepted plus said
    lost (evicted or refused) equal the tasks, and no span arrives twice."""
    n = 10_000
    collector.script = [400, 503, 400]
    config = tmp_path / "tasktrace.toml"
    config.write_text("buffer_size = 500\n")
    # A budget the (slow, pure-Python) collector can answer in: a request still
    # unanswered when it ends may have been taken, and would be said lost ("timeout").
    env = _otlp_env(
        tmp_path, collector.url, TASKTRACE_SHUTDOWN_TIMEOUT="20", TASKTRACE_CONFIG_FILE=str(config)
    )
    # (Under the launcher, which reads the config file: a plain import reads only the
    # environment.)
    run = run_python([str(write_program(tmp_path, _BURSTS)), str(n), "0"], env, launcher=True)
    assert run.returncode == 0, run.stderr
    roots = collector.delivered_roots()
    assert len(roots) == len(set(roots)), "a span arrived twice"
    assert "otlp:timeout" not in run.stderr, run.stderr
    assert len(roots) + undelivered(run.stderr, "otlp") == n, (len(roots), run.stderr)
    assert said_recorded(run.stderr, "otlp") == n, run.stderr
    assert "buffer_full: " in run.stderr and "otlp:export_failed: " in run.stderr, run.stderr


def test_otlp_503_at_exit_is_said_once(tmp_path: Path, collector: Collector) -> None:
    """503 for every request, the exit budget spent retrying: each task is said once
    (never both pending and dropped)."""
    n = 3_000
    collector.mode = 503
    env = _otlp_env(tmp_path, collector.url, TASKTRACE_SHUTDOWN_TIMEOUT="1.0")
    run = run_python([str(write_program(tmp_path, _BURSTS)), str(n)], env)
    assert run.returncode == 0, run.stderr
    assert collector.delivered_roots() == []
    assert undelivered(run.stderr, "otlp") == n, run.stderr
    assert said_recorded(run.stderr, "otlp") == n, run.stderr
