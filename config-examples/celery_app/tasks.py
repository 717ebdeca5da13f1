"""A Celery app as it is usually written: ``@app.task`` on plain functions, no tasktrace.

    redis-server --port 6379 &
    cd config-examples/celery_app
    tasktrace-admin run-program celery -A tasks worker --pool solo     # or prefork, threads
    tasktrace-admin run-program python enqueue.py                      # in another shell
    tasktrace-admin report --app celery-shop
    tasktrace-admin traces                                             # producer + its jobs

tasktrace's Celery integration records every task the worker runs, by its Celery name, in
group ``Celery``; tasktrace.toml lists one task only to give it a name and group of its own.
"""

import os
import time

from celery import Celery

app = Celery("tasks", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.broker_connection_retry_on_startup = True


@app.task
def add(x, y):
    return x + y


@app.task
def resize(image_id):
    time.sleep(0.002)
    return f"image {image_id} resized"


@app.task(bind=True, max_retries=2, default_retry_delay=0)
def charge(self, order_id):
    if self.request.retries == 0 and order_id % 2:
        raise self.retry(exc=ConnectionError(f"payment gateway busy for order {order_id}"))
    return f"order {order_id} charged"
