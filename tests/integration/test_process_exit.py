"""Delivery at process exit, on SIGTERM and in forked children, in real subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest
from _faults import clean_env, run_python, stored_transactions, write_program

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    # Only the exit paths deliver in these tests: no periodic harvest.
    return clean_env(
        tmp_path, **{"TASKTRACE_APP_NAME": "it-app", "TASKTRACE_HARVEST_INTERVAL": "60", **extra}
    )


_TASKS = """
import os, sys, time, signal
import tasktrace

@tasktrace.background_task()
def work(i):
    return i * 2
"""


def _sigterm_when_ready(prog: Path, tmp_path: Path) -> Tuple[int, bytes]:
    """Run ``prog``, send SIGTERM once it prints "ready"; its exit status and stderr."""
    proc = subprocess.Popen(
        [sys.executable, prog], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_exit_delivers_to_sqlite(tmp_path: Path) -> None:
    """A program that simply ends delivers every task at exit."""
    prog = write_program(tmp_path, _TASKS + "for i in range(25):\n    work(i)\n")
    proc = subprocess.run([sys.executable, prog], env=_env(tmp_path), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""
    assert stored_transactions(tmp_path / "tasks.db") == 25


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    """A TCP port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_exit_with_hanging_collector_is_bounded(tmp_path: Path, hanging_endpoint: str) -> None:
    """A collector that never answers delays exit by at most shutdown_timeout, and says so."""
    shutdown_timeout = 1.0
    prog = write_program(tmp_path, _TASKS + "for i in range(5):\n    work(i)\n")
    env = _env(
        tmp_path,
        TASKTRACE_REPORTER="otlp",
        TASKTRACE_OTLP_ENDPOINT=hanging_endpoint,
        TASKTRACE_SHUTDOWN_TIMEOUT=str(shutdown_timeout),
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, prog], env=env, capture_output=True, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    # Generous bound (interpreter start-up included); the design bound is the timeout.
    assert elapsed < shutdown_timeout + 5, elapsed
    assert b"did not finish within shutdown_timeout" in proc.stderr


def test_sigterm_delivers_and_keeps_exit_status(tmp_path: Path) -> None:
    """SIGTERM delivers pending tasks, then the process dies of SIGTERM as it would have."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
for i in range(7):
    work(i)
print("ready", flush=True)
time.sleep(60)
""",
    )
    returncode, err = _sigterm_when_ready(prog, tmp_path)
    assert returncode == -signal.SIGTERM, err
    assert stored_transactions(tmp_path / "tasks.db") == 7


@pytest.mark.skipif(sys.version_info < (3, 10), reason="interrupt_main(signum) is 3.10+")
def test_sigterm_that_misses_a_blocked_main_thread_still_ends_the_process(
    tmp_path: Path,
) -> None:
    """A SIGTERM that lands just before the main thread blocks in a C call (a pool worker
    waiting on its queue's lock when Pool.terminate() comes) only trips CPython's flag;
    with a Python handler in place, nothing would run it. interrupt_main() trips the
    flag exactly so, without interrupting the call: the watcher must notice, wake the
    main thread, and the process must deliver and die of SIGTERM, not hang."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
import _thread, multiprocessing, threading
for i in range(5):
    work(i)
lock = multiprocessing.Lock()
lock.acquire()
threading.Timer(0.3, _thread.interrupt_main, args=(signal.SIGTERM,)).start()
lock.acquire()  # blocks in sem_wait: only an interrupting signal gets out of here
print("not reached", flush=True)
""",
    )
    proc = run_python([str(prog)], _env(tmp_path), timeout=30)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert "not reached" not in proc.stdout
    assert stored_transactions(tmp_path / "tasks.db") == 5


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs os.fork, sigmask")
def test_forked_child_that_records_nothing_keeps_the_default_sigterm(tmp_path: Path) -> None:
    """A child forked after the parent recorded inherits the parent's Python-level SIGTERM
    handler but not its watcher thread. If it kept the handler, a SIGTERM delivered to
    another of its threads while its main thread blocks in a C call (a pool worker waiting
    on its queue's lock when Pool.terminate() comes) would never run it: the child would
    hang and its parent with it. A child that has recorded nothing has nothing to deliver:
    it must have the program's own disposition back and die of the signal; once it
    records, the handler comes back with its watcher."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
import multiprocessing, threading
for i in range(3):
    work(i)
assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # ours, in the parent
child = os.fork()
if child == 0:
    print("child-default", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
    lock = multiprocessing.Lock()
    lock.acquire()
    threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    # The signal must land on the timer's thread, not interrupt the main one: so it is
    # in Pool.terminate()'s race, where it arrives just before the main thread blocks.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    lock.acquire()  # blocks in sem_wait: only the default action can end this
    os._exit(7)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    pid, status = os.waitpid(child, os.WNOHANG)
    if pid:
        break
    time.sleep(0.05)
else:
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    print("child hung", flush=True)
    sys.exit(1)
print("child-status", os.waitstatus_to_exitcode(status), flush=True)
""",
    )
    proc = run_python([str(prog)], _env(tmp_path), timeout=30)
    assert "child-default True" in proc.stdout, proc.stdout + proc.stderr
    assert f"child-status {-signal.SIGTERM}" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert stored_transactions(tmp_path / "tasks.db") == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_that_records_delivers_on_sigterm(tmp_path: Path) -> None:
    """The other half: a forked child that records gets the handler (and the watcher)
    back, and delivers its own tasks when SIGTERM ends it."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
for i in range(3):
    work(i)
child = os.fork()
if child == 0:
    for i in range(4):
        work(i)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
    os._exit(7)
pid, status = os.waitpid(child, 0)
print("child-status", os.waitstatus_to_exitcode(status), flush=True)
""",
    )
    proc = run_python([str(prog)], _env(tmp_path), timeout=60)
    assert f"child-status {-signal.SIGTERM}" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert stored_transactions(tmp_path / "tasks.db") == 7


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux-only")
def test_a_signal_taken_by_a_forked_child_does_not_end_the_parent(tmp_path: Path) -> None:
    """A child forked off inherits the wake-up fd until its at-fork hook drops it; a
    SIGTERM it takes in that window reaches the parent's watcher, which must see that
    the sender is another process and leave the parent alone."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
from tasktrace.recorder import _process as recorder
for i in range(3):
    work(i)
inherited = os.dup(recorder._wakeup_write)  # as a child holds it before its hook runs
child = os.fork()
if child == 0:
    os.write(inherited, bytes([signal.SIGTERM]))  # what its C-level handler writes
    os._exit(0)
os.waitpid(child, 0)
time.sleep(3 * recorder.SIGTERM_NUDGE_AFTER)
print("survived", flush=True)
""",
    )
    proc = run_python([str(prog)], _env(tmp_path), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "survived" in proc.stdout
    assert stored_transactions(tmp_path / "tasks.db") == 3


def test_programs_own_sigterm_handler_still_runs(tmp_path: Path) -> None:
    """A handler installed before tasktrace's is chained: it runs, and tasks are delivered."""
    marker = tmp_path / "handled"
    prog = write_program(
        tmp_path,
        _TASKS
        + f"""
def handler(signum, frame):
    open({str(marker)!r}, "w").write("yes")
    sys.exit(3)

signal.signal(signal.SIGTERM, handler)
for i in range(4):
    work(i)
print("ready", flush=True)
time.sleep(60)
""",
    )
    returncode, err = _sigterm_when_ready(prog, tmp_path)
    assert returncode == 3, err
    assert marker.read_text() == "yes"
    assert stored_transactions(tmp_path / "tasks.db") == 4


def test_programs_graceful_handler_gets_one_sigterm_for_one(tmp_path: Path) -> None:
    """A program whose own handler starts a graceful shutdown and keeps running gets that
    SIGTERM once: the guard against missed signals must not send it a second one (which
    many programs take as "stop now")."""
    marker = tmp_path / "calls"
    prog = write_program(
        tmp_path,
        _TASKS
        + f"""
from tasktrace.recorder import _process as recorder
calls = []
def handler(signum, frame):
    calls.append(signum)

signal.signal(signal.SIGTERM, handler)
for i in range(4):
    work(i)
print("ready", flush=True)
deadline = time.monotonic() + 6 * recorder.SIGTERM_NUDGE_AFTER
while time.monotonic() < deadline:  # graceful shutdown: keep working a while
    time.sleep(0.05)
open({str(marker)!r}, "w").write(str(len(calls)))
""",
    )
    returncode, err = _sigterm_when_ready(prog, tmp_path)
    assert returncode == 0, err
    assert marker.read_text() == "1"
    assert stored_transactions(tmp_path / "tasks.db") == 4


def test_handler_installed_after_tasktrace_wins(tmp_path: Path) -> None:
    """A handler installed after tasktrace's replaces it; atexit still delivers on sys.exit."""
    marker = tmp_path / "handled"
    prog = write_program(
        tmp_path,
        _TASKS
        + f"""
work(0)  # the recorder starts (and installs its handler) here

def handler(signum, frame):
    open({str(marker)!r}, "w").write("yes")
    sys.exit(0)

signal.signal(signal.SIGTERM, handler)
for i in range(3):
    work(i)
print("ready", flush=True)
time.sleep(60)
""",
    )
    returncode, err = _sigterm_when_ready(prog, tmp_path)
    assert returncode == 0, err
    assert marker.exists()
    assert stored_transactions(tmp_path / "tasks.db") == 4


def test_fork_per_job_children_deliver(tmp_path: Path) -> None:
    """RQ-style workers: each job in a forked child ending with os._exit is delivered once."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
work(-1)  # the parent records too; its record must not be sent by the children
for job in range(5):
    pid = os.fork()
    if pid == 0:
        work(job)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
""",
    )
    proc = subprocess.run([sys.executable, prog], env=_env(tmp_path), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "tasks.db"
    conn = sqlite3.connect(str(db))
    pids = conn.execute("SELECT COUNT(DISTINCT pid) FROM transaction_blocks").fetchone()[0]
    conn.close()
    assert stored_transactions(db) == 6 and pids == 6


def test_drop_warning_on_stderr(tmp_path: Path) -> None:
    """Rows dropped for a full buffer are said on stderr by the end of the process."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
from tasktrace._state import STATE
STATE.apply_settings(STATE.settings._replace(buffer_size=10))
for i in range(5000):
    work(i)
""",
    )
    proc = subprocess.run([sys.executable, prog], env=_env(tmp_path), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert b"were kept only in the metrics, without their rows (buffer_full:" in proc.stderr
    assert b"were not delivered" not in proc.stderr  # their calls are all stored
    conn = sqlite3.connect(str(tmp_path / "tasks.db"))
    calls = conn.execute("SELECT SUM(count) FROM metrics").fetchone()[0]
    dropped = conn.execute("SELECT SUM(count) FROM drops").fetchone()[0]
    rows = conn.execute("SELECT COALESCE(SUM(count), 0) FROM transaction_blocks").fetchone()[0]
    conn.close()
    assert calls == 5000 and rows + dropped == 5000


def test_fork_per_job_children_deliver_when_parent_never_recorded(tmp_path: Path) -> None:
    """RQ-style: the parent only forks; each child's job is delivered before os._exit."""
    prog = write_program(
        tmp_path,
        _TASKS
        + """
for job in range(3):
    pid = os.fork()
    if pid == 0:
        work(job)
        os._exit(0)
    os.waitpid(pid, 0)
""",
    )
    proc = subprocess.run([sys.executable, prog], env=_env(tmp_path), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert stored_transactions(tmp_path / "tasks.db") == 3
