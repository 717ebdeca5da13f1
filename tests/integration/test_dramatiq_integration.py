"""Dramatiq with no targets: tasktrace's Dramatiq integration (a middleware) against real
brokers (Redis, and RabbitMQ) and a real ``dramatiq`` worker (processes and threads).

Each message processed is one transaction named by its actor in group ``Dramatiq``, with
the ``job.*`` attributes, delivered exactly once, in the trace of the producer that sent
it; a message that will be retried is an error of its attempt (outcome ``retry``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from typing import Any, Dict, List

import pytest
from _launcher import Launcher
from _rabbitmq import queue_name
from _services import copy_example, fresh_db, stop, wait_until

pytest.importorskip("dramatiq", reason="dramatiq is not installed (it is in the test extra)")

ACTORS = """
import os

import dramatiq

if os.environ["BROKER_URL"].startswith("amqp"):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker as Broker
else:
    from dramatiq.brokers.redis import RedisBroker as Broker

broker = Broker(url=os.environ["BROKER_URL"])
dramatiq.set_broker(broker)
QUEUE = os.environ.get("DRAMATIQ_QUEUE", "default")


@dramatiq.actor(queue_name=QUEUE)
def add(x, y):
    return x + y


@dramatiq.actor(queue_name=QUEUE, max_retries=1, min_backoff=10, max_backoff=10)
def flaky(n):
    raise KeyError(f"no {n}")
"""

PRODUCER = """
import tasktrace
import actors

with tasktrace.BackgroundTask(name="producer", group="Producer"):
    for i in range(3):
        actors.add.send(i, 1)
    actors.flaky.send(7)
print("sent")
"""


def _run(
    launcher: Launcher, broker: str, options: List[str], env: Dict[str, str]
) -> List[Dict[str, Any]]:
    """Start the worker, send the messages from an instrumented producer, wait for the six
    transactions (3 adds, 2 attempts of flaky, the producer), stop the worker (SIGTERM)."""
    launcher.write("actors.py", ACTORS)
    launcher.write("producer.py", PRODUCER)
    full = dict(launcher.env, BROKER_URL=broker, TASKTRACE_APP_NAME="dramatiq-zero", **env)
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasktrace", "run-program", "dramatiq", "actors", *options],
            cwd=launcher.cwd,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = launcher.admin("run-program", "python", "producer.py", env=full, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip() == "sent", sent.stderr
        assert wait_until(lambda: len(launcher.records()) >= 6, 60), log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(60)
    finally:
        stop(proc)
    worker_log = log_path.read_text(errors="replace")
    assert status == 0, worker_log[-3000:]
    assert "dropped" not in worker_log
    return launcher.records()


def _check(records: List[Dict[str, Any]], queue: str) -> None:
    (producer,) = [r for r in records if r["name"] == "producer"]
    assert [s["name"] for s in producer["segments"]] == ["enqueue add"] * 3 + ["enqueue flaky"]
    jobs = [r for r in records if r["group"] == "Dramatiq"]
    assert Counter(r["name"] for r in jobs) == {"add": 3, "flaky": 2}
    for job in jobs:
        attributes = job["attributes"]
        assert attributes["job.system"] == "Dramatiq" and attributes["job.queue"] == queue
        assert attributes["job.queue_wait_ms"] >= 0
        assert (job["trace_id"], job["parent_span_id"]) == (
            producer["trace_id"],
            producer["span_id"],
        )
    attempts = sorted(
        (r for r in jobs if r["name"] == "flaky"), key=lambda r: r["attributes"]["job.retries"]
    )
    assert [a["attributes"]["job.outcome"] for a in attempts] == ["retry", "error"]
    assert [a["attributes"]["job.retries"] for a in attempts] == [0, 1]
    for attempt in attempts:
        assert [e["type"] for e in attempt["errors"]] == ["builtins:KeyError"]
    assert {r["attributes"]["job.outcome"] for r in jobs if r["name"] == "add"} == {"ok"}


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["--processes", "2", "--threads", "2"], id="processes"),
        pytest.param(["--processes", "1", "--threads", "4"], id="threads"),
    ],
)
def test_every_message_recorded_once_over_redis(
    launcher: Launcher, redis_url: str, options: List[str]
) -> None:
    """Over Redis: every message once, by actor name, in the producer's trace."""
    _check(_run(launcher, fresh_db(redis_url), options, {}), "default")


def test_every_message_recorded_once_over_rabbitmq(launcher: Launcher, rabbitmq_url: str) -> None:
    """Over a real RabbitMQ: the same, on a queue of the test's own."""
    queue = queue_name()
    broker = rabbitmq_url.rstrip("/") + "/%2F"
    records = _run(
        launcher, broker, ["--processes", "1", "--threads", "2"], {"DRAMATIQ_QUEUE": queue}
    )
    _check(records, queue)


def test_dramatiq_app_example(launcher: Launcher, redis_url: str) -> None:
    """config-examples/dramatiq_app as its README line runs it: every message by actor,
    the targeted actor under its target's name and group, all in the batch's trace."""
    copy_example("dramatiq_app", launcher.cwd)
    env = dict(launcher.env, DRAMATIQ_BROKER_URL=fresh_db(redis_url))
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasktrace",
                "run-program",
                "dramatiq",
                "actors",
                "--processes",
                "1",
                "--threads",
                "2",
            ],
            cwd=launcher.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        sent = launcher.admin("run-program", "python", "enqueue.py", env=env, timeout=60)
        assert sent.returncode == 0 and sent.stdout.strip() == "sent 10 messages", sent.stderr
        # 5 welcome mails, 5 CRM syncs and a retry of user 3's, and the batch.
        assert wait_until(lambda: len(launcher.records()) >= 12, 60), log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        stop(proc)
    records = launcher.records()
    assert Counter((r["group"], r["name"]) for r in records) == {
        ("Signup", "signup batch"): 1,
        ("Mail", "Welcome mail"): 5,
        ("Dramatiq", "sync_crm"): 6,
    }
    assert len({r["trace_id"] for r in records}) == 1
