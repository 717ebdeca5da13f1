"""RQ end-to-end: a real ``rq worker`` against a real Redis, run under the launcher.

RQ's default worker forks a work horse per job, and the work horse leaves through
``os._exit``: tasktrace must deliver each job's transaction from that child before it goes.
The jobs and the config are the ``config-examples/rq_worker`` example's own, except for
the warm-shutdown test, which needs a job that is still running when SIGTERM arrives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any, Dict, List, Optional

import pytest
from _launcher import Launcher
from _services import (
    SLOW_JOBS,
    copy_example,
    enqueue,
    fresh_db,
    run_worker,
    warm_shutdown_of_one_slow_job,
)

pytest.importorskip("rq", reason="rq is not installed (it is in the test extra)")

#: What the example's enqueue.py puts on the queue: five of each job, and
#: fail_sometimes(n) raises RuntimeError for n = 0 and n = 3.
EXPECTED_CALLS = {"rq_jobs:resize_image": 5, "rq_jobs:fail_sometimes": 5}
EXPECTED_ERRORS = {
    ("builtins:RuntimeError", "job 0 failed"),
    ("builtins:RuntimeError", "job 3 failed"),
}


@pytest.fixture
def rq_example(launcher: Launcher, redis_url: str) -> str:
    """The RQ example copied into the test's directory with its jobs enqueued; the Redis URL."""
    copy_example("rq_worker", launcher.cwd)
    url = fresh_db(redis_url)
    enqueue(launcher, url)
    return url


@pytest.mark.parametrize(
    "worker_class",
    [
        pytest.param(None, id="fork-per-job"),
        pytest.param("rq.worker.SimpleWorker", id="simple-worker"),
    ],
)
def test_every_job_reported_exactly_once(
    launcher: Launcher, rq_example: str, worker_class: Optional[str]
) -> None:
    """Each enqueued job is one transaction, delivered once, with its error when it raised."""
    extra = ("--worker-class", worker_class) if worker_class else ()
    result = run_worker(launcher, rq_example, *extra)
    records = launcher.records()
    assert Counter(r["name"] for r in records) == EXPECTED_CALLS, result.stderr[-3000:]
    assert {r["app"] for r in records} == {"rq-images"}
    assert {r["group"] for r in records} == {"RQ"}
    errors = [(e["type"], e["message"]) for r in records for e in r["errors"]]
    assert sorted(errors) == sorted(EXPECTED_ERRORS)
    pids = {r["pid"] for r in records}
    if worker_class is None:
        # A work horse per job, each leaving through os._exit after delivering its job.
        assert len(pids) == len(records)
    else:
        assert len(pids) == 1
    assert "dropped" not in result.stderr


def _report(launcher: Launcher, db: str) -> List[Dict[str, Any]]:
    result = launcher.admin("report", "--db", db, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows: List[Dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_sqlite_report_counts_each_job_once(launcher: Launcher, rq_example: str) -> None:
    """Work horses writing to one SQLite store: `report` counts every job once."""
    db = str(launcher.cwd / "rq.db")
    run_worker(launcher, rq_example, env={"TASKTRACE_REPORTER": "sqlite", "TASKTRACE_DB": db})
    rows = {row["name"]: row for row in _report(launcher, db)}
    assert {name: row["calls"] for name, row in rows.items()} == EXPECTED_CALLS
    assert rows["rq_jobs:fail_sometimes"]["errors"] == 2
    assert rows["rq_jobs:resize_image"]["errors"] == 0
    assert {row["app"] for row in rows.values()} == {"rq-images"}
    # resize_image sleeps 2 ms: the timing is the job's, not the fork's or the exit's.
    assert 2.0 <= rows["rq_jobs:resize_image"]["p50_ms"] < 1000


SLOW_CONFIG = """
app_name = "rq-slow"

[[background_task]]
function = "slow_jobs:slow"
"""

ENQUEUE_SLOW = """
import sys
import slow_jobs
from redis import Redis
from rq import Queue

Queue("default", connection=Redis.from_url(sys.argv[1])).enqueue(slow_jobs.slow, 0.5)
"""


def test_warm_shutdown_delivers_the_running_job(
    launcher: Launcher,
    redis_url: str,
) -> None:
    """SIGTERM while a job runs: RQ lets it finish, and its transaction is delivered once."""
    launcher.write("slow_jobs.py", SLOW_JOBS)
    launcher.write("tasktrace.toml", SLOW_CONFIG)
    launcher.write("enqueue_slow.py", ENQUEUE_SLOW)
    url = fresh_db(redis_url)
    sent = subprocess.run(
        [sys.executable, "enqueue_slow.py", url], cwd=launcher.cwd, env=launcher.env, timeout=30
    )
    assert sent.returncode == 0
    env = dict(launcher.env, TASKTRACE_HARVEST_INTERVAL="60")  # only the exit path delivers
    warm_shutdown_of_one_slow_job(
        launcher,
        [sys.executable, "-m", "tasktrace", "run-program", "rq", "worker", "--url", url],
        env,
        "rq-slow",
    )
