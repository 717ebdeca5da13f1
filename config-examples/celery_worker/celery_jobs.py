"""The Celery example's job functions: plain Python, no Celery import.

tasktrace.toml lists these functions. tasktrace wraps them when this module finishes
importing, which is before celery_tasks.py hands them to ``app.task``, so the task Celery
runs in its worker processes is the instrumented function itself.
"""

import time


def add(x, y):
    time.sleep(0.002)
    return x + y


def flaky(n):
    if n % 2:
        raise ValueError(f"odd input {n}")
    return n
