"""RQ with no targets: tasktrace's RQ integration against a real Redis and real workers
(the forking work horse per job, and ``SimpleWorker``).

Each job is one transaction named ``job.func_name`` in group ``RQ`` with its ``job.*``
attributes (the queue wait from RQ's own ``enqueued_at``), delivered exactly once, and a
producer run under the launcher carries its trace into the jobs through the job's meta.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any, Dict, List, Optional

import pytest
from _launcher import Launcher
from _services import fresh_db

pytest.importorskip("rq", reason="rq is not installed (it is in the test extra)")

JOBS = """
def add(x, y):
    return x + y


def fails(n):
    raise KeyError(f"no {n}")
"""

PRODUCER = """
import sys

import tasktrace
from redis import Redis
from rq import Queue

import jobs

queue = Queue("work", connection=Redis.from_url(sys.argv[1]))
with tasktrace.BackgroundTask(name="producer", group="Producer"):
    for i in range(3):
        queue.enqueue(jobs.add, i, 1)
    queue.enqueue(jobs.fails, 7)
print("enqueued")
"""


def _run(launcher: Launcher, redis_url: str, worker_class: Optional[str]) -> List[Dict[str, Any]]:
    launcher.write("jobs.py", JOBS)
    launcher.write("producer.py", PRODUCER)
    url = fresh_db(redis_url)
    env = dict(launcher.env, TASKTRACE_APP_NAME="rq-zero")
    sent = subprocess.run(
        [sys.executable, "-m", "tasktrace", "run-program", "python", "producer.py", url],
        cwd=launcher.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert sent.returncode == 0 and sent.stdout.strip() == "enqueued", sent.stderr
    extra = ["--worker-class", worker_class] if worker_class else []
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tasktrace",
            "run-program",
            "rq",
            "worker",
            "--burst",
            "--url",
            url,
            *extra,
            "work",
        ],
        cwd=launcher.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dropped" not in result.stderr
    return launcher.records()


@pytest.mark.parametrize(
    "worker_class",
    [pytest.param(None, id="fork-per-job"), pytest.param("rq.worker.SimpleWorker", id="simple")],
)
def test_every_job_recorded_once_with_the_producers_trace(
    launcher: Launcher, redis_url: str, worker_class: Optional[str]
) -> None:
    """No config: each job is one RQ transaction by function name, in the producer's
    trace, with its error and the job attributes."""
    records = _run(launcher, redis_url, worker_class)
    (producer,) = [r for r in records if r["name"] == "producer"]
    assert [s["name"] for s in producer["segments"]] == ["enqueue jobs.add"] * 3 + [
        "enqueue jobs.fails"
    ]
    jobs = [r for r in records if r["group"] == "RQ"]
    assert Counter(r["name"] for r in jobs) == {"jobs.add": 3, "jobs.fails": 1}
    assert {r["app"] for r in jobs} == {"rq-zero"}
    for job in jobs:
        assert job["trace_id"] == producer["trace_id"]
        assert job["parent_span_id"] == producer["span_id"]
        attributes = job["attributes"]
        assert attributes["job.system"] == "RQ" and attributes["job.queue"] == "work"
        assert attributes["job.queue_wait_ms"] >= 0
    assert len({r["attributes"]["job.id"] for r in jobs}) == 4
    (failed,) = [r for r in jobs if r["name"] == "jobs.fails"]
    assert [(e["type"], e["message"]) for e in failed["errors"]] == [
        ("builtins:KeyError", "'no 7'")
    ]
    assert failed["attributes"]["job.outcome"] == "error"
    pids = {r["pid"] for r in jobs}
    assert len(pids) == (4 if worker_class is None else 1)


def test_rq_integration_can_be_switched_off(launcher: Launcher, redis_url: str) -> None:
    """``[integrations] rq = false``: no job transactions, no enqueue traces."""
    launcher.write("tasktrace.toml", "[integrations]\nrq = false\n")
    records = _run(launcher, redis_url, "rq.worker.SimpleWorker")
    assert [(r["name"], r["segments"]) for r in records] == [("producer", [])]
