"""Example Celery app. Each task execution in a worker process is one background task.

    redis-server --port 6379 &
    cd config-examples/celery_worker
    tasktrace-admin run-program celery -A celery_tasks worker --pool prefork --concurrency 2
    python enqueue.py          # in another shell
    tasktrace-admin report --app celery-math

The job functions live in celery_jobs.py and are registered here. They cannot be
targeted in this module with ``@app.task`` on a ``def``: Celery keeps the function it is
given at decoration time, while tasktrace patches a module's attributes when the module
finishes importing, too late for that module's own decorators. Registering functions
from a module imported first needs no wrapper functions and no tasktrace import.
"""

import os

import celery_jobs
from celery import Celery

app = Celery("celery_tasks", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.broker_connection_retry_on_startup = True

add = app.task(name="celery_tasks.add")(celery_jobs.add)
flaky = app.task(name="celery_tasks.flaky")(celery_jobs.flaky)
