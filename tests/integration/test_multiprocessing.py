"""multiprocessing (fork, forkserver, spawn; Pool and Process) delivers every task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _faults import clean_env, stored_calls, stored_transactions, write_program

pytestmark = pytest.mark.integration

_PROGRAM = """
import multiprocessing as mp
import sys

import tasktrace


@tasktrace.background_task()
def work(i):
    return i * i


def run_many(n):
    for i in range(n):
        work(i)


if __name__ == "__main__":
    method, kind = sys.argv[1], sys.argv[2]
    ctx = mp.get_context(method)
    if kind == "pool":
        with ctx.Pool(3) as pool:  # __exit__ terminates the workers (SIGTERM)
            assert sum(pool.map(work, range(30), chunksize=2)) == sum(i * i for i in range(30))
    elif kind == "pool-close":
        pool = ctx.Pool(2)
        pool.map(work, range(30))
        pool.close()
        pool.join()
    else:
        procs = [ctx.Process(target=run_many, args=(10,)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0, p.exitcode
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("kind", ["pool", "pool-close", "process"])
def test_every_task_is_delivered(tmp_path: Path, method: str, kind: str) -> None:
    """Each of the 30 tasks run in child processes lands in the store exactly once."""
    prog = write_program(tmp_path, _PROGRAM, "mpjob.py")
    env = clean_env(tmp_path, TASKTRACE_HARVEST_INTERVAL="60", TASKTRACE_SHUTDOWN_TIMEOUT="5")
    proc = subprocess.run(
        [sys.executable, str(prog), method, kind],
        env=env,
        capture_output=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr.decode()
    db = tmp_path / "tasks.db"
    assert (stored_transactions(db), stored_calls(db)) == (30, 30), proc.stderr.decode()
