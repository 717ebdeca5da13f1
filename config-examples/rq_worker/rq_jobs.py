"""Example RQ jobs. The RQ worker forks a child per job; each job is one background task.

    redis-server --port 6379 &
    tasktrace-admin run-program --config config-examples/rq_worker/tasktrace.toml \
        rq worker --burst --url redis://127.0.0.1:6379 default
    python config-examples/rq_worker/enqueue.py      # in another shell, before the worker
"""

import time


def resize_image(image_id, width):
    time.sleep(0.002)
    return f"{image_id}@{width}"


def fail_sometimes(n):
    if n % 3 == 0:
        raise RuntimeError(f"job {n} failed")
    return n
