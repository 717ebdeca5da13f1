"""arq jobs on Redis, no tasktrace in sight.

    redis-server --port 6379 &
    cd config-examples/arq_app
    tasktrace-admin run-program python enqueue.py
    tasktrace-admin run-program arq jobs.WorkerSettings --burst
    tasktrace-admin report --app arq-reports

tasktrace's arq integration records every job the worker runs by its function's name in
group ``arq``; tasktrace.toml only adds a function trace inside one of them.
"""

import os

from arq import Retry
from arq.connections import RedisSettings


def render_pdf(report_id):
    return b"%PDF-1.7 report " + str(report_id).encode()


async def build_report(ctx, report_id):
    return len(render_pdf(report_id))


async def upload(ctx, report_id):
    if report_id == 2 and ctx["job_try"] == 1:
        raise Retry(defer=0)  # the storage said "try again": arq runs the job once more
    return f"report {report_id} uploaded"


class WorkerSettings:
    functions = (build_report, upload)
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("ARQ_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    max_tries = 2
