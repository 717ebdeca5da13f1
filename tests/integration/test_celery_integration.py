"""Celery with no targets: tasktrace's Celery integration against real brokers (Redis, and
RabbitMQ, the usual production broker) and real workers (solo, threads, prefork with and
without ``max_tasks_per_child=1``).

Every task a worker runs is one transaction named ``task.name`` in group ``Celery``, with
the ``job.*`` attributes, its outcome (ok, error, retry, rejected, soft and hard time
limits) and the producer's trace context: a producer run under the launcher enqueues
inside a transaction, and each job's transaction continues its trace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from typing import Any, Dict, List

import pytest
from _launcher import Launcher
from _rabbitmq import queue_name
from _services import copy_example, fresh_db, stop, wait_until

pytest.importorskip("celery", reason="celery is not installed (it is in the test extra)")
pytest.importorskip("redis", reason="redis-py is not installed (celery[redis], the test extra)")

#: A Celery app as a new user writes it: ``@app.task`` on plain functions, no tasktrace.
TASKS = """
import os
import time

from celery import Celery
from celery.exceptions import Reject

app = Celery("tasks", broker=os.environ["CELERY_BROKER_URL"])
app.conf.broker_connection_retry_on_startup = True
app.conf.result_backend = os.environ.get("CELERY_RESULT_BACKEND")
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")


@app.task
def add(x, y):
    return x + y


@app.task
def fails(n):
    raise KeyError(f"no {n}")


@app.task(bind=True, max_retries=1, default_retry_delay=0)
def retried(self):
    if self.request.retries == 0:
        raise self.retry(exc=ValueError("first attempt"), countdown=0)
    return "second attempt"


@app.task
def rejects():
    raise Reject("unwanted", requeue=False)


@app.task(soft_time_limit=0.3)
def soft_limit():
    time.sleep(3)


@app.task(time_limit=0.5)
def hard_limit():
    time.sleep(5)
"""

#: Runs under the launcher: enqueues inside one transaction, waits for every result.
PRODUCER = """
import sys
import tasktrace
import tasks

names = sys.argv[1].split(",")
with tasktrace.BackgroundTask(name="producer", group="Producer"):
    results = []
    for i in range(3):
        results.append(tasks.add.delay(i, 1))
    if "fails" in names:
        results.append(tasks.fails.delay(7))
    if "retried" in names:
        results.append(tasks.retried.delay())
    if "rejects" in names:
        tasks.rejects.delay()
    if "soft_limit" in names:
        results.append(tasks.soft_limit.delay())
    if "hard_limit" in names:
        results.append(tasks.hard_limit.delay())
    done = [r.get(timeout=60, propagate=False) for r in results]
print(f"{len(done)} results")
"""


def _worker(pool: str, *options: str) -> List[str]:
    return [
        sys.executable,
        "-m",
        "tasktrace",
        "run-program",
        "celery",
        "-A",
        "tasks",
        "worker",
        "--pool",
        pool,
        "--loglevel",
        "warning",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        *options,
    ]


def _run(
    launcher: Launcher,
    redis_url: str,
    worker: List[str],
    names: str,
    env: Dict[str, str],
    broker: str = "",
) -> List[Dict[str, Any]]:
    """Start ``worker``, run the producer, stop the worker (SIGTERM) and return the records.

    The broker is a fresh Redis database unless ``broker`` is given; results go to Redis.
    """
    launcher.write("tasks.py", TASKS)
    launcher.write("producer.py", PRODUCER)
    full = dict(launcher.env, CELERY_BROKER_URL=broker or fresh_db(redis_url), **env)
    full["CELERY_RESULT_BACKEND"] = fresh_db(redis_url)
    full["TASKTRACE_APP_NAME"] = "celery-zero"
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            worker,
            cwd=launcher.cwd,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = subprocess.run(
            [sys.executable, "-m", "tasktrace", "run-program", "python", "producer.py", names],
            cwd=launcher.cwd,
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert sent.returncode == 0, sent.stderr[-2000:] + log_path.read_text()[-2000:]
        if "rejects" in names:  # no result to wait for: wait for its record
            assert wait_until(
                lambda: any(r["name"] == "tasks.rejects" for r in launcher.records()), 20
            ), log_path.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)  # warm shutdown
        status = proc.wait(60)
    finally:
        stop(proc)
    worker_log = log_path.read_text(errors="replace")
    assert status == 0, worker_log[-3000:]
    assert "dropped" not in worker_log
    return launcher.records()


def _jobs(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in records if r["group"] == "Celery"]


@pytest.mark.parametrize(
    ("pool", "options"),
    [
        pytest.param("solo", (), id="solo"),
        pytest.param("threads", ("--concurrency", "2"), id="threads"),
        pytest.param("prefork", ("--concurrency", "2"), id="prefork"),
        pytest.param(
            "prefork", ("--concurrency", "2", "--max-tasks-per-child", "1"), id="prefork-recycled"
        ),
    ],
)
def test_every_task_recorded_once_by_name_with_no_config(
    launcher: Launcher, redis_url: str, pool: str, options: tuple
) -> None:
    """No config at all: each task run is one transaction named task.name, group Celery."""
    records = _run(launcher, redis_url, _worker(pool, *options), "fails", {})
    jobs = _jobs(records)
    assert Counter(r["name"] for r in jobs) == {"tasks.add": 3, "tasks.fails": 1}
    assert len({r["attributes"]["job.id"] for r in jobs}) == 4
    for job in jobs:
        attributes = job["attributes"]
        assert attributes["job.system"] == "Celery"
        assert attributes["job.queue"] == "celery"
        assert attributes["job.retries"] == 0
        assert attributes["job.queue_wait_ms"] >= 0
    failed = next(r for r in jobs if r["name"] == "tasks.fails")
    assert [(e["type"], e["message"]) for e in failed["errors"]] == [
        ("builtins:KeyError", "'no 7'")
    ]
    assert failed["attributes"]["job.outcome"] == "error"
    assert {r["attributes"]["job.outcome"] for r in jobs if r["name"] == "tasks.add"} == {"ok"}
    if pool == "prefork" and "--max-tasks-per-child" in options:
        # A child per task: each delivered its one task before it was recycled.
        assert len({r["pid"] for r in jobs}) == len(jobs)


def test_jobs_continue_the_producers_trace(launcher: Launcher, redis_url: str) -> None:
    """Each job's transaction has the producer's trace id and its span as parent; the
    producer records an ``enqueue <task>`` function trace per message."""
    records = _run(launcher, redis_url, _worker("solo"), "", {})
    (producer,) = [r for r in records if r["name"] == "producer"]
    enqueues = [s["name"] for s in producer["segments"]]
    assert enqueues == ["enqueue tasks.add"] * 3
    jobs = _jobs(records)
    assert len(jobs) == 3
    for job in jobs:
        assert job["trace_id"] == producer["trace_id"]
        assert job["parent_span_id"] == producer["span_id"]
        assert job["span_id"] != producer["span_id"]


@pytest.mark.parametrize("mode", ["link", "none"])
def test_propagate_link_and_none(launcher: Launcher, redis_url: str, mode: str) -> None:
    """``propagate = "link"``: own trace, a link to the producer; ``"none"``: nothing."""
    launcher.write("tasktrace.toml", f'[integrations]\npropagate = "{mode}"\n')
    records = _run(launcher, redis_url, _worker("solo"), "", {})
    (producer,) = [r for r in records if r["name"] == "producer"]
    jobs = _jobs(records)
    assert len(jobs) == 3
    for job in jobs:
        assert job["trace_id"] != producer["trace_id"]
        assert job["parent_span_id"] is None
        link = (
            job["attributes"].get("tasktrace.link.trace_id"),
            job["attributes"].get("tasktrace.link.span_id"),
        )
        if mode == "link":
            assert link == (producer["trace_id"], producer["span_id"])
        else:
            assert link == (None, None)


def test_integration_can_be_switched_off(launcher: Launcher, redis_url: str) -> None:
    """``[integrations] celery = false``: the worker records nothing, the producer no
    enqueue traces."""
    launcher.write("tasktrace.toml", "[integrations]\ncelery = false\n")
    records = _run(launcher, redis_url, _worker("solo"), "", {})
    assert [(r["name"], r["segments"]) for r in records] == [("producer", [])]


def test_outcomes_retry_reject_and_time_limits(launcher: Launcher, redis_url: str) -> None:
    """A retry is an error of the attempt; a rejection, a soft and a hard time limit are
    recorded with their outcome (the hard one by the pool's supervisor)."""
    records = _run(
        launcher,
        redis_url,
        _worker("prefork", "--concurrency", "2"),
        "retried,rejects,soft_limit,hard_limit",
        {},
    )
    jobs = _jobs(records)
    by_name: Dict[str, List[Dict[str, Any]]] = {}
    for job in jobs:
        by_name.setdefault(job["name"], []).append(job)
    attempts = sorted(by_name["tasks.retried"], key=lambda r: r["attributes"]["job.retries"])
    assert [a["attributes"]["job.outcome"] for a in attempts] == ["retry", "ok"]
    assert [(e["type"], e["message"]) for e in attempts[0]["errors"]] == [
        ("builtins:ValueError", "first attempt")
    ]
    assert attempts[1]["errors"] == []
    (rejected,) = by_name["tasks.rejects"]
    assert rejected["attributes"]["job.outcome"] == "rejected"
    assert [e["type"] for e in rejected["errors"]] == ["celery.exceptions:Reject"]
    (soft,) = by_name["tasks.soft_limit"]
    assert soft["attributes"]["job.outcome"] == "error"
    assert [e["type"] for e in soft["errors"]] == ["billiard.exceptions:SoftTimeLimitExceeded"]
    (hard,) = by_name["tasks.hard_limit"]
    assert hard["attributes"]["job.outcome"] == "timeout"
    assert [e["type"] for e in hard["errors"]] == ["billiard.exceptions:TimeLimitExceeded"]
    assert hard["duration"] >= 0.4
    # Recorded by the supervisor, from its request: still in the producer's trace.
    (producer,) = [r for r in records if r["name"] == "producer"]
    assert (hard["trace_id"], hard["parent_span_id"]) == (producer["trace_id"], producer["span_id"])
    assert hard["attributes"]["job.queue"] == "celery"


@pytest.mark.parametrize(
    ("pool", "options"),
    [
        pytest.param("solo", (), id="solo"),
        pytest.param(
            "prefork", ("--concurrency", "2", "--max-tasks-per-child", "1"), id="prefork-recycled"
        ),
    ],
)
def test_rabbitmq_broker(
    launcher: Launcher, redis_url: str, rabbitmq_url: str, pool: str, options: tuple
) -> None:
    """Over a real RabbitMQ: every task once, named, in the producer's trace, the queue
    from the delivery's routing key."""
    queue = queue_name()
    records = _run(
        launcher,
        redis_url,
        _worker(pool, "--queues", queue, *options),
        "fails",
        {"CELERY_QUEUE": queue},
        broker=rabbitmq_url,
    )
    (producer,) = [r for r in records if r["name"] == "producer"]
    jobs = _jobs(records)
    assert Counter(r["name"] for r in jobs) == {"tasks.add": 3, "tasks.fails": 1}
    for job in jobs:
        assert job["attributes"]["job.queue"] == queue
        assert (job["trace_id"], job["parent_span_id"]) == (
            producer["trace_id"],
            producer["span_id"],
        )
    (failed,) = [r for r in jobs if r["name"] == "tasks.fails"]
    assert failed["attributes"]["job.outcome"] == "error"


def test_celery_app_example(launcher: Launcher, redis_url: str) -> None:
    """config-examples/celery_app as its README line runs it: every task by name, the
    targeted task object under its target's name and group, all in the checkout's trace."""
    copy_example("celery_app", launcher.cwd)
    env = dict(launcher.env, CELERY_BROKER_URL=fresh_db(redis_url))
    log_path = launcher.cwd / "worker.log"
    worker = _worker("solo")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            worker,
            cwd=launcher.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = launcher.admin("run-program", "python", "enqueue.py", env=env, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip() == "sent 9 tasks", sent.stderr
        # 9 tasks, one retried once (charge(1)), and the checkout.
        assert wait_until(lambda: len(launcher.records()) >= 11, 30), log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        stop(proc)
    records = launcher.records()
    names = Counter((r["group"], r["name"]) for r in records)
    assert names == {
        ("Shop", "checkout"): 1,
        ("Celery", "tasks.add"): 3,
        ("Images", "Resize image"): 3,
        ("Celery", "tasks.charge"): 4,
    }
    (checkout,) = [r for r in records if r["name"] == "checkout"]
    assert {r["trace_id"] for r in records} == {checkout["trace_id"]}
    assert {r["app"] for r in records} == {"celery-shop"}


@pytest.mark.parametrize(
    ("pool", "options"),
    [
        pytest.param("solo", (), id="solo"),
        pytest.param("prefork", ("--concurrency", "2"), id="prefork"),
    ],
)
def test_cold_shutdown_delivers_what_finished(
    launcher: Launcher, redis_url: str, pool: str, options: tuple
) -> None:
    """SIGQUIT (Celery's cold shutdown) after the tasks finished: each delivered once,
    though the harvest interval is never reached."""
    launcher.write("tasks.py", TASKS)
    launcher.write("producer.py", PRODUCER)
    env = dict(launcher.env, CELERY_BROKER_URL=fresh_db(redis_url))
    env["CELERY_RESULT_BACKEND"] = fresh_db(redis_url)
    env["TASKTRACE_HARVEST_INTERVAL"] = "60"  # only the exit paths deliver
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _worker(pool, *options),
            cwd=launcher.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = launcher.admin("run-program", "python", "producer.py", "", env=env, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip() == "3 results", sent.stderr
        proc.send_signal(signal.SIGQUIT)
        proc.wait(60)
    finally:
        stop(proc)
    worker_log = log_path.read_text(errors="replace")
    jobs = _jobs(launcher.records())
    assert Counter(r["name"] for r in jobs) == {"tasks.add": 3}, worker_log[-3000:]
    assert len({r["attributes"]["job.id"] for r in jobs}) == 3


def test_trace_view_shows_producer_and_jobs(launcher: Launcher, redis_url: str) -> None:
    """With the SQLite store, ``tasktrace-admin trace ID`` shows the producer and its three
    jobs as one tree."""
    db = str(launcher.cwd / "trace.db")
    records = _run(
        launcher,
        redis_url,
        _worker("solo"),
        "",
        {"TASKTRACE_REPORTER": "sqlite,jsonl", "TASKTRACE_DB": db},
    )
    assert records == []  # jsonl goes beside the store when both are on
    lines = (launcher.cwd / "trace.jsonl").read_text().splitlines()
    producer = next(json.loads(line) for line in lines if '"producer"' in line)
    shown = launcher.admin("trace", producer["trace_id"], "--db", db, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    tree = json.loads(shown.stdout)
    transactions = tree["transactions"]
    assert sorted(t["name"] for t in transactions) == ["producer"] + ["tasks.add"] * 3
    children = [t for t in transactions if t["name"] == "tasks.add"]
    assert {t["parent_span_id"] for t in children} == {producer["span_id"]}


def test_celery_multi_daemonised_worker(launcher: Launcher, redis_url: str) -> None:
    """``celery multi start`` (a detached, daemonised worker) and ``stopwait``: each task
    once, delivered by the daemon before it exits."""
    launcher.write("tasks.py", TASKS)
    launcher.write("producer.py", PRODUCER)
    env = dict(launcher.env, CELERY_BROKER_URL=fresh_db(redis_url))
    env["CELERY_RESULT_BACKEND"] = fresh_db(redis_url)
    env["TASKTRACE_HARVEST_INTERVAL"] = "60"
    common = [
        "w1",
        "-A",
        "tasks",
        f"--pidfile={launcher.cwd}/%n.pid",
        f"--logfile={launcher.cwd}/%n%I.log",
    ]
    started = launcher.admin(
        "run-program",
        "celery",
        "multi",
        "start",
        *common,
        "--pool=prefork",
        "--concurrency=2",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=warning",
        env=env,
        timeout=60,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        sent = launcher.admin("run-program", "python", "producer.py", "fails", env=env, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip() == "4 results", sent.stderr
    finally:
        stopped = launcher.admin(
            "run-program", "celery", "multi", "stopwait", *common, env=env, timeout=60
        )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert wait_until(lambda: len(_jobs(launcher.records())) >= 4, 10)
    jobs = _jobs(launcher.records())
    assert Counter(r["name"] for r in jobs) == {"tasks.add": 3, "tasks.fails": 1}
