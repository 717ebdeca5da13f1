"""Huey with no targets: tasktrace's Huey integration against a real Redis and a real
``huey_consumer`` (thread and process workers).

Each task executed is one transaction named by the task in group ``Huey``, delivered
exactly once, with ``job.outcome`` (a retried attempt is an error of that attempt); the
producer's ``enqueue`` function traces are recorded. (Huey messages carry no trace
context: see ``tasktrace.integrations._huey``.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from typing import Any, Dict, List

import pytest
from _launcher import Launcher
from _services import copy_example, fresh_db, stop, wait_until

pytest.importorskip("huey", reason="huey is not installed (it is in the test extra)")

TASKS = """
import os
from urllib.parse import urlsplit

from huey import RedisHuey

url = urlsplit(os.environ["REDIS_URL"])
huey = RedisHuey(
    "tasktrace-test", host=url.hostname, port=url.port, db=int(url.path.strip("/") or 0)
)


@huey.task()
def add(x, y):
    return x + y


@huey.task(retries=1, retry_delay=0)
def flaky(n):
    raise KeyError(f"no {n}")


@huey.task()
def resize(n):
    return n
"""

PRODUCER = """
import tasktrace
import hueytasks

with tasktrace.BackgroundTask(name="producer", group="Producer"):
    for i in range(3):
        hueytasks.add(i, 1)
    hueytasks.flaky(7)
    hueytasks.resize(1)
print("sent")
"""

CONFIG = """
[[background_task]]
function = "hueytasks:resize"
name = "Resize image"
group = "Images"
"""


def _run(launcher: Launcher, redis_url: str, kind: str) -> List[Dict[str, Any]]:
    launcher.write("hueytasks.py", TASKS)
    launcher.write("producer.py", PRODUCER)
    launcher.write("tasktrace.toml", CONFIG)
    env = dict(launcher.env, REDIS_URL=fresh_db(redis_url), TASKTRACE_APP_NAME="huey-zero")
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasktrace",
                "run-program",
                "huey_consumer",
                "hueytasks.huey",
                "-k",
                kind,
                "-w",
                "2",
                "-d",
                "0.05",
            ],
            cwd=launcher.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = launcher.admin("run-program", "python", "producer.py", env=env, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip() == "sent", sent.stderr
        # 3 adds, 2 attempts of flaky, resize and the producer.
        assert wait_until(lambda: len(launcher.records()) >= 7, 60), log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        stop(proc)
    assert "dropped" not in log_path.read_text(errors="replace")
    return launcher.records()


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_every_task_recorded_once(launcher: Launcher, redis_url: str, kind: str) -> None:
    """No config for most tasks: each execution once, by task name, group Huey; the task
    object named by a target gets its name and group."""
    records = _run(launcher, redis_url, kind)
    (producer,) = [r for r in records if r["name"] == "producer"]
    assert Counter(s["name"] for s in producer["segments"]) == {
        "enqueue add": 3,
        "enqueue flaky": 1,
        "enqueue resize": 1,
    }
    jobs = [r for r in records if r["name"] != "producer"]
    assert Counter((r["group"], r["name"]) for r in jobs) == {
        ("Huey", "add"): 3,
        ("Huey", "flaky"): 2,
        ("Images", "Resize image"): 1,
    }
    assert len({r["attributes"]["job.id"] for r in jobs if r["name"] != "flaky"}) == 4
    outcomes = sorted(r["attributes"]["job.outcome"] for r in jobs if r["name"] == "flaky")
    assert outcomes == ["error", "retry"]
    for job in jobs:
        assert job["attributes"]["job.system"] == "Huey"
        if job["name"] == "flaky":
            assert [e["type"] for e in job["errors"]] == ["builtins:KeyError"]
        else:
            assert job["errors"] == [] and job["attributes"]["job.outcome"] == "ok"


def test_huey_app_example(launcher: Launcher, redis_url: str) -> None:
    """config-examples/huey_app as its README line runs it: every task by name, the
    targeted task under its target's name and group, a retried attempt an error."""
    copy_example("huey_app", launcher.cwd)
    env = dict(launcher.env, HUEY_REDIS_URL=fresh_db(redis_url))
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasktrace",
                "run-program",
                "huey_consumer",
                "tasks.huey",
                "-k",
                "thread",
                "-w",
                "2",
                "-d",
                "0.05",
            ],
            cwd=launcher.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = launcher.admin("run-program", "python", "enqueue.py", env=env, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip() == "enqueued 6 tasks", sent.stderr
        # 3 reports, 3 uploads and a retry of upload 2, and the producer.
        assert wait_until(lambda: len(launcher.records()) >= 8, 60), log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        stop(proc)
    records = launcher.records()
    assert Counter((r["group"], r["name"]) for r in records) == {
        ("Reports", "nightly reports"): 1,
        ("Reports", "Render report"): 3,
        ("Huey", "upload"): 4,
    }
    uploads = [r for r in records if r["name"] == "upload"]
    assert sorted(r["attributes"]["job.outcome"] for r in uploads) == ["error", "ok", "ok", "retry"]
