"""Enqueue the example's tasks inside one transaction (run it under tasktrace-admin
run-program, so the enqueueing is traced and the jobs join its trace).

tasktrace-admin run-program python enqueue.py [BROKER_URL]
"""

import os
import sys

if len(sys.argv) > 1:
    os.environ["CELERY_BROKER_URL"] = sys.argv[1]

import tasks  # after the assignment above: it reads CELERY_BROKER_URL

import tasktrace

with tasktrace.BackgroundTask(name="checkout", group="Shop"):
    for i in range(3):
        tasks.add.delay(i, 10)
        tasks.resize.delay(i)
        tasks.charge.delay(i)
print("sent 9 tasks")
