"""Liveness for real (SPEC section 7): programs run under ``tasktrace-admin run-program``
with short intervals (harvest 0.2 s, ``every 2s``, ``grace 1s``) on a real SQLite store, and
``running`` and ``check`` run as commands: running tasks appear and leave, a SIGKILL leaves
a lost task, overdue warns once, every ``check`` status and exit code, many processes at
once, and the dashboard's API answering as the commands do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

pytestmark = pytest.mark.integration

JOB = """
import asyncio, sys, time

def long_task(seconds):
    time.sleep(seconds)

def failing_task():
    raise ValueError("the nightly import broke")

def stepping():
    for _ in range(10):
        time.sleep(0.2)
        yield 1

async def waiting(seconds):
    await asyncio.sleep(seconds)

if __name__ == "__main__":
    what = sys.argv[1]
    if what == "long":
        long_task(float(sys.argv[2]))
    elif what == "fail":
        failing_task()
    elif what == "generator":
        sum(stepping())
    elif what == "async":
        asyncio.run(waiting(float(sys.argv[2])))
    elif what == "threads":
        import threading
        workers = [threading.Thread(target=long_task, args=(float(sys.argv[2]),)) for _ in range(2)]
        for w in workers: w.start()
        for w in workers: w.join()
"""

CONFIG = """
app_name = "nightly"
harvest_interval = 0.2

[[background_task]]
function = "__main__:long_task"
name = "long"
schedule = "every 2s"
grace = "1s"
{max_duration}

[[background_task]]
function = "__main__:failing_task"
name = "fail"
schedule = "every 1h"

[[background_task]]
function = "__main__:stepping"
name = "generator"

[[background_task]]
function = "__main__:waiting"
name = "async"
"""


class Job:
    """A scratch directory with the job, its config and its store, and the commands."""

    def __init__(self, tmp_path: Path, max_duration: Optional[str] = None) -> None:
        self.cwd = tmp_path
        self.db = tmp_path / "tasktrace.db"
        (tmp_path / "job.py").write_text(JOB)
        limit = f'max_duration = "{max_duration}"' if max_duration else ""
        (tmp_path / "tasktrace.toml").write_text(CONFIG.format(max_duration=limit))
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))
        }
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        self.env["TASKTRACE_DB"] = str(self.db)
        self.env["TASKTRACE_REPORTER"] = "sqlite"

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tasktrace", "run-program", sys.executable, "job.py", *args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        process = self.start(*args)
        out, err = process.communicate(timeout=60)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tasktrace", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def running(self, *extra: str) -> List[Dict[str, Any]]:
        done = self.admin("running", "--format", "json", *extra)
        if done.returncode == 1 and "no tasktrace store" in done.stderr:
            return []
        assert done.returncode == 0, done.stderr
        entries: List[Dict[str, Any]] = json.loads(done.stdout)
        return entries

    def check(self) -> tuple[int, Dict[str, Dict[str, Any]]]:
        done = self.admin("check", "--format", "json")
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, {row["name"]: row for row in json.loads(done.stdout)}


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``condition`` until it returns something truthy (a deadline, not a timing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.1)


@pytest.fixture
def job(tmp_path: Path) -> Job:
    return Job(tmp_path)


def test_a_long_task_appears_while_it_runs_and_leaves_when_it_ends(job: Job) -> None:
    """A 3 s task shows in ``running`` (app, name, pid, host, status running) soon after
    it starts, and is gone once it has ended; its run is in the store."""
    process = job.start("long", "3")
    try:
        (entry,) = wait_for(job.running)
        assert (entry["app"], entry["name"], entry["status"], entry["pid"]) == (
            "nightly",
            "long",
            "running",
            process.pid,
        )
        table = job.admin("running")
        assert "long" in table.stdout and "running" in table.stdout
    finally:
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert job.running() == []
    code, rows = job.check()
    assert rows["long"]["status"] == "ok" and rows["long"]["last_duration_ms"] >= 3000
    assert code == 0


@pytest.mark.parametrize("kind", ["generator", "async"])
def test_generators_and_coroutines_are_running_while_they_run(job: Job, kind: str) -> None:
    """A generator task (stepped for 2 s) and an asyncio task count as open from their
    first step to their end."""
    process = job.start(kind, "2")
    try:
        (entry,) = wait_for(job.running)
        assert entry["name"] == kind and entry["status"] == "running"
    finally:
        process.communicate(timeout=60)
    assert job.running() == []


def test_sigkill_mid_task_leaves_a_lost_task(job: Job) -> None:
    """A program killed with SIGKILL in the middle of its task is never silent: the task
    is lost in ``running`` (with its start, last sighting and process) and ``check``
    fails on it."""
    process = job.start("long", "60")
    try:
        wait_for(job.running)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    (entry,) = wait_for(lambda: [e for e in job.running() if e["status"] == "lost"])
    assert entry["pid"] == process.pid and entry["last_seen"] >= entry["started"]
    code, rows = job.check()
    assert rows["long"]["status"] == "lost" and code == 1
    assert "long (lost)" in job.admin("check").stderr


def test_overdue_warns_once_and_fails_check(tmp_path: Path) -> None:
    """Past max_duration: one warning line on stderr naming the task, its elapsed time and
    the limit; ``running`` and ``check`` say overdue while it runs."""
    job = Job(tmp_path, max_duration="1s")
    process = job.start("long", "3")
    try:
        wait_for(lambda: [e for e in job.running() if e["status"] == "overdue"])
        code, rows = job.check()
        assert rows["long"]["status"] == "overdue" and code == 1
    finally:
        _, err = process.communicate(timeout=60)
    warnings = [line for line in err.splitlines() if "max_duration" in line]
    assert len(warnings) == 1, err
    assert "task long has been running for" in warnings[0] and "max_duration of 1.0s" in warnings[0]


def test_check_statuses_and_exit_codes_over_a_job_s_life(job: Job) -> None:
    """new before the first run (the config alone), ok after it, late within grace,
    missed after it; failed after a run that raised. Exit 0, 0, 0, 1, 1."""
    done = job.admin("check", "--format", "json")
    assert done.returncode == 1 and "no tasktrace store" in done.stderr
    assert job.run("long", "0").returncode == 0  # records the schedules, one run of "long"
    code, rows = job.check()
    assert (rows["long"]["status"], rows["fail"]["status"], code) == ("ok", "new", 0)
    wait_for(lambda: job.check()[1]["long"]["status"] == "late", timeout=10)
    assert job.check()[0] == 0
    code, rows = wait_for(
        lambda: (lambda r: r if r[1]["long"]["status"] == "missed" else None)(job.check()),
        timeout=10,
    )
    assert code == 1
    assert job.run("fail").returncode == 1
    code, rows = job.check()
    assert (
        rows["fail"]["status"] == "failed" and rows["fail"]["last_error"] == "builtins:ValueError"
    )
    assert code == 1


def test_a_bad_schedule_is_a_usage_error(job: Job) -> None:
    """``check`` with a config whose schedule cannot be used exits 2 naming key and value."""
    (job.cwd / "bad.toml").write_text(
        '[[background_task]]\nfunction = "x:y"\nschedule = "61 * * * *"\n'
    )
    done = job.admin("check", "--config", "bad.toml")
    assert done.returncode == 2
    assert "61 * * * *" in done.stderr and "not a valid cron expression" in done.stderr


def test_validate_config_prints_each_schedule_and_its_next_due_time(job: Job) -> None:
    """validate-config shows every target's schedule, zone, grace and next due time."""
    done = job.admin("validate-config")
    assert done.returncode == 0, done.stdout
    assert "schedule every 2s (grace 1s): next due 20" in done.stdout
    assert "schedule every 1h (grace 5m): next due" in done.stdout


def test_many_processes_write_their_running_entries_at_once(job: Job) -> None:
    """Eight programs with two threads each, all in long tasks: sixteen entries, one per
    task and process; none once they have ended."""
    processes = [job.start("threads", "3") for _ in range(8)]
    try:
        entries = wait_for(
            lambda: (lambda e: e if len(e) == 16 else None)(job.running()), timeout=30
        )
        assert sorted({e["pid"] for e in entries}) == sorted(p.pid for p in processes)
        assert all(e["status"] == "running" for e in entries)
    finally:
        for process in processes:
            process.communicate(timeout=60)
    assert all(p.returncode == 0 for p in processes)
    assert job.running() == []


def test_the_dashboard_api_answers_as_the_commands_do(job: Job) -> None:
    """``/api/running`` and ``/api/check`` return what ``running`` and ``check`` print
    (a lost task: nothing in it moves with the clock)."""
    import http.client

    process = job.start("long", "60")
    try:
        wait_for(job.running)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    wait_for(lambda: [e for e in job.running() if e["status"] == "lost"])
    ui = subprocess.Popen(
        [sys.executable, "-m", "tasktrace", "ui", "--port", "0", "--db", str(job.db)],
        cwd=job.cwd,
        env=job.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert ui.stderr is not None
        url = ui.stderr.readline().split("http://", 1)[1].split("/", 1)[0]
        host, port = url.rsplit(":", 1)

        def get(route: str) -> Any:
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request("GET", route)
            response = connection.getresponse()
            assert response.status == 200
            return json.loads(response.read())

        assert get("/api/running") == job.running()
        assert get("/api/check") == json.loads(job.admin("check", "--format", "json").stdout)
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.communicate(timeout=30)
