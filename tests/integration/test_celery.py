"""Celery end-to-end: a real prefork worker against a real Redis, run under the launcher.

The app, the job functions and the config are the ``config-examples/celery_worker``
example's own. The test sends the tasks, waits for their results (a Redis result backend
given on the command line, so the example needs none), stops the worker with SIGTERM
(Celery's warm shutdown) and counts what tasktrace delivered after the worker is gone.
A second test stops the worker while a task runs: Celery lets it finish, and it counts.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from typing import Dict, List

import pytest
from _launcher import Launcher
from _services import (
    SLOW_JOBS,
    copy_example,
    fresh_db,
    stop,
    wait_until,
    warm_shutdown_of_one_slow_job,
)

pytest.importorskip("celery", reason="celery is not installed (it is in the test extra)")
pytest.importorskip("redis", reason="redis-py is not installed (celery[redis], the test extra)")

#: Sends the example's tasks and waits for every result; prints how many came back.
SEND_AND_WAIT = """
import sys
import celery_tasks

celery_tasks.app.conf.result_backend = sys.argv[1]
results = [celery_tasks.add.delay(i, 10) for i in range(5)]
results += [celery_tasks.flaky.delay(i) for i in range(5)]
done = [r.get(timeout=30, propagate=False) for r in results]
print(f"{len(done)} results")
"""


def worker_command(app: str, *options: str) -> List[str]:
    """The prefork worker for ``app`` under the launcher; ``options`` go before ``worker``."""
    return [
        sys.executable,
        "-m",
        "tasktrace",
        "run-program",
        "--config",
        "tasktrace.toml",
        "celery",
        "-A",
        app,
        *options,
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        "2",
        "--loglevel",
        "warning",
        # Alone on this broker: no need to wait for replies from other workers.
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
    ]


#: Five of each task; flaky(n) raises ValueError for n = 1 and n = 3.
EXPECTED_CALLS = {"celery_tasks.add": 5, "celery_tasks.flaky": 5}
EXPECTED_ERRORS = [("builtins:ValueError", "odd input 1"), ("builtins:ValueError", "odd input 3")]


@pytest.mark.parametrize(
    "harvest_interval",
    [
        pytest.param("0.2", id="delivered-while-running"),
        pytest.param("60", id="delivered-at-shutdown"),
    ],
)
def test_every_task_reported_exactly_once(
    launcher: Launcher,
    redis_url: str,
    harvest_interval: str,
) -> None:
    """Prefork children report each task once, whether delivered by harvest or at shutdown."""
    copy_example("celery_worker", launcher.cwd)
    launcher.write("send_and_wait.py", SEND_AND_WAIT)
    broker = fresh_db(redis_url)
    backend = fresh_db(redis_url)
    env: Dict[str, str] = dict(launcher.env)
    env["CELERY_BROKER_URL"] = broker
    env["TASKTRACE_HARVEST_INTERVAL"] = harvest_interval
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            worker_command("celery_tasks", "--result-backend", backend),
            cwd=launcher.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = subprocess.run(
            [sys.executable, "send_and_wait.py", backend],
            cwd=launcher.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        worker_log = log_path.read_text(errors="replace")
        assert sent.returncode == 0, sent.stderr[-2000:] + worker_log[-2000:]
        assert sent.stdout.strip() == "10 results"
        if harvest_interval == "0.2":
            # Delivered by the children's harvest threads while the worker still runs.
            assert wait_until(lambda: len(launcher.records()) >= 10, 15), launcher.records()
        worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        status = worker.wait(30)
    finally:
        stop(worker)
    worker_log = log_path.read_text(errors="replace")
    assert status == 0, worker_log[-3000:]
    records = launcher.records()
    assert Counter(r["name"] for r in records) == EXPECTED_CALLS, worker_log[-3000:]
    assert {(r["app"], r["group"]) for r in records} == {("celery-math", "Celery")}
    errors = sorted((e["type"], e["message"]) for r in records for e in r["errors"])
    assert errors == EXPECTED_ERRORS
    # The tasks ran in the pool's forked children, not in the worker's main process.
    pids = {r["pid"] for r in records}
    assert worker.pid not in pids and 1 <= len(pids) <= 2
    assert "dropped" not in worker_log


SLOW_APP = """
import os
import slow_jobs
from celery import Celery

app = Celery("slow_app", broker=os.environ["CELERY_BROKER_URL"])
app.conf.broker_connection_retry_on_startup = True
slow = app.task(name="slow")(slow_jobs.slow)
"""

SLOW_CONFIG = """
app_name = "celery-slow"

[[background_task]]
function = "slow_jobs:slow"
"""


def test_warm_shutdown_delivers_the_running_task(
    launcher: Launcher,
    redis_url: str,
) -> None:
    """SIGTERM while a task runs: Celery lets it finish, and it is delivered once."""
    launcher.write("slow_jobs.py", SLOW_JOBS)
    launcher.write("slow_app.py", SLOW_APP)
    launcher.write("tasktrace.toml", SLOW_CONFIG)
    env = dict(launcher.env, CELERY_BROKER_URL=fresh_db(redis_url))
    env["TASKTRACE_HARVEST_INTERVAL"] = "60"  # only the children's exit path delivers

    def send() -> None:
        sent = subprocess.run(
            [sys.executable, "-c", "import slow_app; slow_app.slow.delay(0.5)"],
            cwd=launcher.cwd,
            env=env,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert sent.returncode == 0

    warm_shutdown_of_one_slow_job(
        launcher, worker_command("slow_app"), env, "celery-slow", send=send
    )
