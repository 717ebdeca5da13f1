"""Enqueue the example's tasks inside one transaction (run it under tasktrace-admin
run-program: each enqueue is a function trace of it).

tasktrace-admin run-program python enqueue.py
"""

import tasks

import tasktrace

with tasktrace.BackgroundTask(name="nightly reports", group="Reports"):
    for report_id in range(1, 4):
        tasks.render_report(report_id)
        tasks.upload(report_id)
print("enqueued 6 tasks")
