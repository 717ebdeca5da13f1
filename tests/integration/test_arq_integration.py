"""arq with no targets: tasktrace's arq integration against a real Redis and a real
``arq`` worker (asyncio; ``--burst``).

Each job is one transaction named by its function in group ``arq``, with ``job.id``,
``job.retries`` and ``job.queue_wait_ms``; ``Retry`` makes the attempt an error with
outcome ``retry``. arq's releases require redis-py < 6 and Celery's Redis transport
redis-py >= 6.1, so arq is not in the test extra: run these with arq installed in a
virtualenv of its own (``pip install -e '.[test]' arq`` then ``pip install 'redis<6'``
breaks Celery's tests, not these).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from _launcher import Launcher
from _services import fresh_db

pytest.importorskip(
    "arq",
    reason="arq is not installed: it requires redis-py < 6, which Celery's Redis transport "
    "does not accept, so it is not in the test extra (see this module's docstring)",
)

JOBS = """
import os

from arq import Retry
from arq.connections import RedisSettings


async def add(ctx, x, y):
    return x + y


async def flaky(ctx, n):
    if ctx["job_try"] == 1:
        raise Retry(defer=0)
    raise KeyError(f"no {n}")


class WorkerSettings:
    functions = [add, flaky]
    redis_settings = RedisSettings.from_dsn(os.environ["REDIS_URL"])
    max_tries = 2
"""

PRODUCER = """
import asyncio

import tasktrace
from arq import create_pool

import jobs


async def main():
    pool = await create_pool(jobs.WorkerSettings.redis_settings)
    with tasktrace.BackgroundTask(name="producer", group="Producer"):
        for i in range(3):
            await pool.enqueue_job("add", i, 1)
        await pool.enqueue_job("flaky", 7)
    await pool.aclose()
    print("enqueued")


asyncio.run(main())
"""


def test_every_job_recorded_once(launcher: Launcher, redis_url: str) -> None:
    """No config: each job once, by function name, with its retry and error."""
    launcher.write("jobs.py", JOBS)
    launcher.write("producer.py", PRODUCER)
    env = dict(launcher.env, REDIS_URL=fresh_db(redis_url), TASKTRACE_APP_NAME="arq-zero")
    sent = launcher.admin("run-program", "python", "producer.py", env=env, timeout=60)
    assert sent.returncode == 0 and sent.stdout.strip() == "enqueued", sent.stderr
    worker = subprocess.run(
        [sys.executable, "-m", "tasktrace", "run-program", "arq", "jobs.WorkerSettings", "--burst"],
        cwd=launcher.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    records = launcher.records()
    (producer,) = [r for r in records if r["name"] == "producer"]
    assert [s["name"] for s in producer["segments"]] == ["enqueue add"] * 3 + ["enqueue flaky"]
    jobs = [r for r in records if r["group"] == "arq"]
    assert Counter(r["name"] for r in jobs) == {"add": 3, "flaky": 2}
    for job in jobs:
        assert job["attributes"]["job.system"] == "arq"
        assert job["attributes"]["job.queue_wait_ms"] >= 0
    attempts = sorted(
        (r for r in jobs if r["name"] == "flaky"), key=lambda r: r["attributes"]["job.retries"]
    )
    assert [a["attributes"]["job.outcome"] for a in attempts] == ["retry", "error"]
    assert [e["type"] for e in attempts[1]["errors"]] == ["builtins:KeyError"]
    assert {r["attributes"]["job.outcome"] for r in jobs if r["name"] == "add"} == {"ok"}
