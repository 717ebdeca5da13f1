"""Huey tasks on Redis, no tasktrace in sight.

    redis-server --port 6379 &
    cd config-examples/huey_app
    tasktrace-admin run-program huey_consumer tasks.huey -k thread -w 2
    tasktrace-admin run-program python enqueue.py      # in another shell
    tasktrace-admin report --app huey-reports

tasktrace's Huey integration records every task the consumer runs by its name in group
``Huey``; tasktrace.toml lists one task only to name it differently.
"""

import os

from huey import RedisHuey

huey = RedisHuey("reports", url=os.environ.get("HUEY_REDIS_URL", "redis://127.0.0.1:6379/0"))


@huey.task()
def render_report(report_id):
    return f"report {report_id} rendered"


@huey.task(retries=1, retry_delay=0)
def upload(report_id):
    if report_id == 2:
        raise TimeoutError(f"upload of report {report_id} timed out")
