"""arq with no targets: tasktrace's arq integration against a real Redis and a real
``arq`` worker (asyncio; ``--burst``).

Each job is one transaction named by its function in group ``arq``, with ``job.id``,
``job.retries`` and ``job.queue_wait_ms``; ``Retry`` makes the attempt an error with
outcome ``retry`` while arq will run the job again and ``error`` on its last try; a job
past its timeout is a ``timeout``. arq's releases require redis-py < 6 and Celery's Redis
transport redis-py >= 6.1, so arq is not in the test extra but in the extra ``test-arq``:
``.ci/run`` runs these in a virtualenv of their own (``.ci-venv-arq``, ``pip install -e
'.[test-arq]'``); by hand, ``python -m venv v && v/bin/pip install -e '.[test-arq]' &&
v/bin/python -m pytest tests/integration/test_arq_integration.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter

import pytest
from _launcher import Launcher
from _services import copy_example, fresh_db

pytest.importorskip(
    "arq",
    reason="arq is not installed: it requires redis-py < 6, which the test extra's Celery "
    "does not accept; .ci/run runs this module in a virtualenv of its own with the extra "
    "test-arq (see this module's docstring)",
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


LIMITS = """
import asyncio
import os

from arq import Retry
from arq.connections import RedisSettings
from arq.worker import func


async def stubborn(ctx):
    raise Retry(defer=0)


async def slow(ctx):
    await asyncio.sleep(60)


class WorkerSettings:
    functions = [stubborn, func(slow, timeout=0.5)]
    redis_settings = RedisSettings.from_dsn(os.environ["REDIS_URL"])
    max_tries = 2
"""

LIMITS_PRODUCER = """
import asyncio

from arq import create_pool

import limits


async def main():
    pool = await create_pool(limits.WorkerSettings.redis_settings)
    await pool.enqueue_job("stubborn")
    await pool.enqueue_job("slow")
    await pool.aclose()
    print("enqueued")


asyncio.run(main())
"""


def test_last_try_and_timeout(launcher: Launcher, redis_url: str) -> None:
    """``Retry`` on the last try is an error (arq fails the job), and a job past its
    timeout is a timeout with arq's ``TimeoutError``, not a silent cancel."""
    launcher.write("limits.py", LIMITS)
    launcher.write("limits_producer.py", LIMITS_PRODUCER)
    env = dict(launcher.env, REDIS_URL=fresh_db(redis_url), TASKTRACE_APP_NAME="arq-limits")
    sent = launcher.admin("run-program", "python", "limits_producer.py", env=env, timeout=60)
    assert sent.returncode == 0 and sent.stdout.strip() == "enqueued", sent.stderr
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "tasktrace",
            "run-program",
            "arq",
            "limits.WorkerSettings",
            "--burst",
        ],
        cwd=launcher.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    jobs = [r for r in launcher.records() if r["group"] == "arq"]
    stubborn = sorted(
        (r for r in jobs if r["name"] == "stubborn"), key=lambda r: r["attributes"]["job.retries"]
    )
    assert [a["attributes"]["job.outcome"] for a in stubborn] == ["retry", "error"]
    assert [e["type"] for e in stubborn[1]["errors"]] == ["arq.worker:Retry"]
    (slow,) = [r for r in jobs if r["name"] == "slow"]
    assert slow["attributes"]["job.outcome"] == "timeout"
    timeout_error = f"{asyncio.TimeoutError.__module__}:{asyncio.TimeoutError.__qualname__}"
    assert [e["type"] for e in slow["errors"]] == [timeout_error]


def _arq_worker(launcher: Launcher, env: dict, settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasktrace", "run-program", "arq", settings, "--burst"],
        cwd=launcher.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_arq_app_example(launcher: Launcher, redis_url: str) -> None:
    """config-examples/arq_app as its README line runs it: validate-config accepts it, the
    producer's enqueues are its segments, every job is recorded by name with the config's
    function trace inside, and the retried upload is a retry then ok."""
    copy_example("arq_app", launcher.cwd)
    env = dict(launcher.env, ARQ_REDIS_URL=fresh_db(redis_url))
    checked = launcher.admin("validate-config", "tasktrace.toml", env=env, timeout=60)
    assert checked.returncode == 0 and " 0 error(s)" in checked.stdout, checked.stdout
    sent = launcher.admin("run-program", "python", "enqueue.py", env=env, timeout=60)
    assert sent.returncode == 0 and sent.stdout.strip() == "enqueued 6 jobs", sent.stderr
    worker = _arq_worker(launcher, env, "jobs.WorkerSettings")
    assert worker.returncode == 0, worker.stderr[-3000:]
    records = launcher.records()
    assert {r["app"] for r in records} == {"arq-reports"}
    (producer,) = [r for r in records if r["name"] == "nightly reports"]
    assert [s["name"] for s in producer["segments"]] == [
        "enqueue build_report",
        "enqueue upload",
    ] * 3
    jobs = [r for r in records if r["group"] == "arq"]
    assert Counter(r["name"] for r in jobs) == {"build_report": 3, "upload": 4}
    for job in jobs:
        if job["name"] == "build_report":
            assert [s["name"] for s in job["segments"]] == ["jobs:render_pdf"]
    outcomes = Counter(r["attributes"]["job.outcome"] for r in jobs if r["name"] == "upload")
    assert outcomes == {"ok": 3, "retry": 1}
