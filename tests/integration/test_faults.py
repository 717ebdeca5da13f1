"""Faults in delivery: real programs against a failing collector or store lose nothing
that could be kept (stored + said-lost = tasks run), and behave exactly as without
tasktrace (same output, same exit status, no traceback)."""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from _faults import (
    Collector,
    Run,
    clean_env,
    dead_endpoint,
    run_python,
    stored_calls,
    stored_records,
    stored_transactions,
    undelivered,
    write_program,
)

from tasktrace.reporters.base import Deadline

pytestmark = pytest.mark.integration

#: Runs N tasks with pauses (so several harvests happen), prints a result computed from
#: them, and exits with status 3: what tasktrace must never change.
_PROGRAM = """
import sys, time
import tasktrace

@tasktrace.background_task()
def work(i):
    time.sleep(0.001)
    return i * i

def main():
    n = int(sys.argv[1])
    total = 0
    for i in range(n):
        total += work(i)
        if i % 10 == 9:
            time.sleep(0.05)
    print(f"done {n} {total}")
    return 3

sys.exit(main())
"""


def _expected_stdout(n: int) -> str:
    return f"done {n} {sum(i * i for i in range(n))}\n"


@pytest.fixture
def collector() -> Iterator[Collector]:
    srv = Collector()
    yield srv
    srv.close()


def _assert_program_unchanged(run: Run, n: int) -> None:
    assert run.returncode == 3, run.stderr
    assert run.stdout == _expected_stdout(n)
    assert "Traceback" not in run.stderr, run.stderr


def _otlp_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    return clean_env(tmp_path, TASKTRACE_REPORTER="otlp", TASKTRACE_OTLP_ENDPOINT=endpoint, **extra)


# -- OTLP collector faults ----------------------------------------------------------------


def test_collector_down_for_the_whole_run(tmp_path: Path) -> None:
    """Nothing listening: exit stays bounded and stderr counts every undelivered task."""
    n, shutdown = 40, 1.5
    prog = write_program(tmp_path, _PROGRAM)
    env = _otlp_env(tmp_path, dead_endpoint(), TASKTRACE_SHUTDOWN_TIMEOUT=str(shutdown))
    run = run_python([str(prog), str(n)], env)
    _assert_program_unchanged(run, n)
    assert run.elapsed < shutdown + 8, run.elapsed  # start-up included; generous slack
    assert undelivered(run.stderr, "otlp") == n, run.stderr
    # The tasks' metrics could not go either, and that is said apart.
    assert undelivered(run.stderr, "otlp_metrics") == n, run.stderr


def test_collector_503_then_recovers(tmp_path: Path, collector: Collector) -> None:
    """503 twice, then 200: every span arrives, none twice, nothing is said lost."""
    n = 40
    collector.script = [503, 503]
    prog = write_program(tmp_path, _PROGRAM)
    env = _otlp_env(tmp_path, collector.url, TASKTRACE_SHUTDOWN_TIMEOUT="10")
    run = run_python([str(prog), str(n)], env, launcher=True)  # also under run-python
    _assert_program_unchanged(run, n)
    roots = collector.delivered_roots()
    assert len(roots) == n and len(set(roots)) == n, (len(roots), run.stderr)
    assert sorted(name for _, _, name in roots) == ["__main__:work"] * n
    assert collector.parse_errors() == []
    assert undelivered(run.stderr) == 0, run.stderr
    assert [r.answer for r in collector.requests[:2]] == ["503", "503"]


def test_collector_hangs(tmp_path: Path, collector: Collector) -> None:
    """Accepts, never answers: exit is bounded by shutdown_timeout and the loss is said."""
    n, shutdown = 30, 1.0
    collector.mode = "hang"
    prog = write_program(tmp_path, _PROGRAM)
    env = _otlp_env(tmp_path, collector.url, TASKTRACE_SHUTDOWN_TIMEOUT=str(shutdown))
    run = run_python([str(prog), str(n)], env)
    _assert_program_unchanged(run, n)
    # The exit waited for the hanging export for its shutdown_timeout, and no longer.
    assert shutdown * 0.9 <= run.elapsed < shutdown + 6, run.elapsed
    assert "did not finish within shutdown_timeout" in run.stderr
    assert undelivered(run.stderr, "otlp") == n, run.stderr
    assert undelivered(run.stderr, "otlp_metrics") == n, run.stderr
    assert collector.delivered_roots() == []


def test_collector_429_retry_after(tmp_path: Path, collector: Collector) -> None:
    """429 with Retry-After: 1, then 200: retried after about a second; all arrive once."""
    n = 30
    collector.script = [(429, {"Retry-After": "1"})]
    prog = write_program(tmp_path, _PROGRAM)
    env = _otlp_env(tmp_path, collector.url, TASKTRACE_SHUTDOWN_TIMEOUT="10")
    run = run_python([str(prog), str(n)], env)
    _assert_program_unchanged(run, n)
    roots = collector.delivered_roots()
    assert len(roots) == n and len(set(roots)) == n, (len(roots), run.stderr)
    assert undelivered(run.stderr) == 0, run.stderr
    assert collector.requests[0].answer == "429"
    assert collector.times[1] - collector.times[0] >= 0.9  # Retry-After was honoured


# -- SQLite store faults ------------------------------------------------------------------

_LOCKER = """
import os, sqlite3, sys, time
from tasktrace import store

db, flushed, released = sys.argv[1:4]
store.connect(db).close()  # the schema exists before the lock is taken
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(flushed) and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.3)  # longer than the program's harvest interval, while it keeps recording
conn.execute("COMMIT")
conn.close()
open(released, "w").close()
"""

_LOCKED_PROGRAM = """
import os, sys, time
import tasktrace

@tasktrace.background_task()
def work(i):
    return i

flushed, released = sys.argv[1:3]
for i in range(10):
    work(i)
first = tasktrace.flush(0.5)  # the database is locked: the batch must be kept
open(flushed, "w").close()
for i in range(10, 20):
    work(i)
    time.sleep(0.02)
deadline = time.monotonic() + 30
while not os.path.exists(released) and time.monotonic() < deadline:
    time.sleep(0.02)
second = tasktrace.flush(10)  # the lock is gone: kept and new batches are written
for i in range(20, 30):
    work(i)
print(first, second)
"""


def test_sqlite_locked_longer_than_a_harvest(tmp_path: Path) -> None:
    """A BEGIN EXCLUSIVE held by another process: the batch is kept, then written."""
    db = tmp_path / "tasks.db"
    flushed, released = tmp_path / "flushed", tmp_path / "released"
    locker_py = write_program(tmp_path, _LOCKER, "locker.py")
    prog = write_program(tmp_path, _LOCKED_PROGRAM)
    env = clean_env(tmp_path, TASKTRACE_HARVEST_INTERVAL="60", TASKTRACE_SHUTDOWN_TIMEOUT="10")
    locker = subprocess.Popen(
        [sys.executable, str(locker_py), str(db), str(flushed), str(released)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        run = run_python([str(prog), str(flushed), str(released)], env)
    finally:
        _, locker_err = locker.communicate(timeout=60)
    assert locker.returncode == 0, locker_err
    assert run.returncode == 0, run.stderr
    assert run.stdout == "False True\n", run.stderr
    assert "Traceback" not in run.stderr
    assert stored_transactions(db) == 30
    assert undelivered(run.stderr) == 0, run.stderr
    conn = sqlite3.connect(str(db))
    calls, drops = conn.execute(
        "SELECT (SELECT SUM(count) FROM metrics), (SELECT COUNT(*) FROM drops)"
    ).fetchone()
    conn.close()
    records = stored_records(db)
    rows, distinct = len(records), len({(r.trace_id, r.span_id) for r in records})
    assert (calls, drops) == (30, 0)
    assert rows == distinct == 30


def test_sqlite_path_not_writable(tmp_path: Path) -> None:
    """A database path under a regular file: the program is unaffected; one warning names
    the path, and every task is said dropped."""
    n = 40
    (tmp_path / "afile").write_text("not a directory")
    db = tmp_path / "afile" / "db.sqlite"
    prog = write_program(tmp_path, _PROGRAM)
    run = run_python([str(prog), str(n)], clean_env(tmp_path, TASKTRACE_DB=str(db)))
    _assert_program_unchanged(run, n)
    mentions = [line for line in run.stderr.splitlines() if str(db) in line]
    assert len(mentions) == 1, run.stderr
    assert "cannot write" in mentions[0]
    assert undelivered(run.stderr) == n, run.stderr


_BURST_PROGRAM = """
import tasktrace

@tasktrace.background_task()
def work(i):
    return i

for i in range(2500):
    work(i)
print("done")
"""


def test_sqlite_unwritable_burst_counts_every_task(tmp_path: Path) -> None:
    """One large batch (rows sampled to max_rows_per_name) that cannot be written: every
    task is said dropped, not only the sampled rows (its metrics are lost as well)."""
    (tmp_path / "afile").write_text("not a directory")
    prog = write_program(tmp_path, _BURST_PROGRAM)
    env = clean_env(
        tmp_path, TASKTRACE_DB=str(tmp_path / "afile" / "db"), TASKTRACE_HARVEST_INTERVAL="60"
    )
    run = run_python([str(prog)], env)
    assert run.returncode == 0 and run.stdout == "done\n", run.stderr
    assert undelivered(run.stderr) == 2500, run.stderr


_FULL_DISK_PROGRAM = """
import sys, time
import tasktrace

@tasktrace.background_task()
def work(i):
    tasktrace.add_custom_attribute("payload", "x" * 250)
    return i

n = int(sys.argv[1])
for i in range(n):
    work(i)
    if i % 50 == 49:
        time.sleep(0.02)
print("done", n)
sys.exit(3)
"""

_FSIZE_LIMIT = 256 * 1024


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FSIZE_LIMIT, _FSIZE_LIMIT))


def test_disk_full(tmp_path: Path) -> None:
    """RLIMIT_FSIZE (writes fail with EFBIG): the program is unaffected, a warning is said,
    and stored + said-dropped = tasks run."""
    n = 1500
    db = tmp_path / "tasks.db"
    prog = write_program(tmp_path, _FULL_DISK_PROGRAM)
    run = run_python([str(prog), str(n)], clean_env(tmp_path), preexec_fn=_limit_file_size)
    assert run.returncode == 3, run.stderr
    assert run.stdout == f"done {n}\n"
    assert "Traceback" not in run.stderr, run.stderr
    assert f"cannot write {db}" in run.stderr, run.stderr
    dropped = undelivered(run.stderr)
    assert dropped > 0, run.stderr
    # Calls from the exact metrics (rows may be sampled), plus what was said dropped.
    assert stored_calls(db) + dropped == n, run.stderr


# -- the program or its workers killed ----------------------------------------------------

_SIGTERM_PROGRAM = """
import time
import tasktrace

@tasktrace.background_task()
def work(i):
    time.sleep(0.002)
    print(i, flush=True)  # last statement: the task is recorded right after

i = 0
while True:
    work(i)
    i += 1
"""


def test_sigterm_mid_run(tmp_path: Path) -> None:
    """SIGTERM while tasks run: what was recorded is delivered; the status is -SIGTERM."""
    prog = write_program(tmp_path, _SIGTERM_PROGRAM)
    proc = subprocess.Popen(
        [sys.executable, str(prog)],
        env=clean_env(tmp_path, TASKTRACE_HARVEST_INTERVAL="0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(150)]
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err
    assert "Traceback" not in err, err
    printed = len(lines) + len(rest.splitlines())
    # A task prints, then is recorded: the signal may fall between the two.
    stored = stored_calls(tmp_path / "tasks.db")
    assert printed - 1 <= stored <= printed, (printed, stored, err)


_KILLED_CHILD_PROGRAM = """
import os, signal, sys, time
import tasktrace

@tasktrace.background_task()
def work(i):
    time.sleep(0.001)
    return i

for i in range(20):
    work(i)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    i = 0
    while True:  # a busy worker: killed in the middle of recording and harvesting
        work(1000 + i)
        i += 1
        if i == 50:
            os.write(write_end, b"x")
os.close(write_end)
os.read(read_end, 1)
time.sleep(0.5)  # a few child harvests
os.kill(pid, signal.SIGKILL)
_, status = os.waitpid(pid, 0)
for i in range(20, 40):
    work(i)
print("child", "killed" if os.WIFSIGNALED(status) else status)
"""


def test_worker_child_sigkilled(tmp_path: Path) -> None:
    """A forked worker killed with SIGKILL: all of the parent's tasks still arrive once."""
    db = tmp_path / "tasks.db"
    prog = write_program(tmp_path, _KILLED_CHILD_PROGRAM)
    run = run_python([str(prog)], clean_env(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "child killed\n"
    assert "Traceback" not in run.stderr, run.stderr
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        pids = conn.execute("SELECT COUNT(DISTINCT pid) FROM transaction_blocks").fetchone()[0]
    finally:
        conn.close()
    records = stored_records(db)
    first = min((r for r in records if r.name == "__main__:work"), key=lambda r: r.start)
    parents = [r for r in records if r.pid == first.pid]
    parent = (len(parents), len({(r.trace_id, r.span_id) for r in parents}))
    assert parent == (40, 40)
    assert pids in (1, 2)  # the child may or may not have delivered before it died


_WRITER = """
import sys
import tasktrace

@tasktrace.background_task()
def work(i):
    return i

for i in range(int(sys.argv[1])):
    work(i)
    if i % 40 == 0:
        tasktrace.flush(10.0)  # many small harvests: many concurrent write transactions
"""


def test_twenty_processes_one_database(tmp_path: Path) -> None:
    """20 processes writing one store at once, each with many small harvests: report
    --format json counts every task once, every one is stored once, nothing is dropped."""
    procs, per = 20, 150
    db = tmp_path / "shared.db"
    prog = write_program(tmp_path, _WRITER, "writer.py")
    env = clean_env(
        tmp_path,
        TASKTRACE_DB=str(db),
        TASKTRACE_HARVEST_INTERVAL="0.05",
        TASKTRACE_SHUTDOWN_TIMEOUT="20",
    )
    started = [
        subprocess.Popen(
            [sys.executable, str(prog), str(per)], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(procs)
    ]
    for proc in started:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert undelivered(err) == 0 and "Traceback" not in err, err
    report = subprocess.run(
        [sys.executable, "-m", "tasktrace", "report", "--db", str(db), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    assert sum(row["calls"] for row in rows) == procs * per
    assert [row["name"] for row in rows] == ["__main__:work"]
    records = stored_records(db)
    stored = (
        len(records),
        len({(r.trace_id, r.span_id) for r in records}),
        len({r.pid for r in records}),
    )
    assert stored == (procs * per, procs * per, procs)
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("SELECT COUNT(*) FROM drops").fetchone()[0] == 0
    finally:
        conn.close()


def test_exit_is_bounded_even_when_everything_fails(tmp_path: Path) -> None:
    """sqlite unwritable and otlp hanging together: still bounded, still said."""
    n, shutdown = 20, 1.0
    (tmp_path / "afile").write_text("")
    hang = Collector("hang")
    try:
        env = clean_env(
            tmp_path,
            TASKTRACE_REPORTER="sqlite,otlp",
            TASKTRACE_DB=str(tmp_path / "afile" / "x.db"),
            TASKTRACE_OTLP_ENDPOINT=hang.url,
            TASKTRACE_SHUTDOWN_TIMEOUT=str(shutdown),
            # No harvest before the exit: every transaction is still pending when the
            # program ends, so the exit has the hanging collector to wait for. (With the
            # default 0.1 s of these tests, a harvest during the run could already have
            # given the spans up, and the exit then rightly had nothing to wait for.)
            TASKTRACE_HARVEST_INTERVAL="60",
        )
        prog = write_program(tmp_path, _PROGRAM)
        started = time.monotonic()
        run = run_python([str(prog), str(n)], env)
    finally:
        hang.close()
    _assert_program_unchanged(run, n)
    assert shutdown * 0.9 <= time.monotonic() - started < shutdown + 6  # it waited, bounded
    assert "were not delivered" in run.stderr or "dropped transactions" in run.stderr


# -- the retry wait under a moving deadline (in process) ---------------------------------


def test_retry_wait_is_kept_when_the_deadline_moves_but_leaves_room() -> None:
    """A deadline brought forward that still leaves room does not cut a retry wait short
    (it used to end it, and every later wait, at once: retries in a tight loop)."""
    deadline = Deadline(None)
    threading.Timer(0.05, deadline.bring_forward, args=(time.monotonic() + 30,)).start()
    started = time.monotonic()
    deadline.sleep(0.4)
    deadline.sleep(0.2)  # a later wait is a real wait too
    assert time.monotonic() - started >= 0.55


def test_retry_wait_ends_when_the_deadline_moves_before_its_end() -> None:
    """A deadline brought forward to before the end of a wait ends the wait early."""
    deadline = Deadline(None)
    threading.Timer(0.05, deadline.bring_forward, args=(time.monotonic() + 0.1,)).start()
    started = time.monotonic()
    deadline.sleep(20)
    assert time.monotonic() - started < 10
