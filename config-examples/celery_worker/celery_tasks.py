"""Example Celery app. Each task body is one background task.

    redis-server --port 6379 &
    tasktrace-admin run-program --config config-examples/celery_worker/tasktrace.toml \
        celery -A celery_tasks worker --pool prefork --concurrency 2
    python -c "import celery_tasks; celery_tasks.add.delay(2, 3)"
"""

import os

from celery import Celery

app = Celery("celery_tasks", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))


def _add(x, y):
    return x + y


def _flaky(n):
    if n % 2:
        raise ValueError(f"odd input {n}")
    return n


# The plain functions are what tasktrace wraps (listed in tasktrace.toml); Celery's
# task objects call them, so every execution in a worker process is one transaction.
add = app.task(name="celery_tasks.add")(lambda x, y: _add(x, y))
flaky = app.task(name="celery_tasks.flaky")(lambda n: _flaky(n))
