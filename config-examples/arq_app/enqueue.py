"""Enqueue the example's jobs inside one transaction (run it under tasktrace-admin
run-program: each enqueue is a function trace of it).

tasktrace-admin run-program python enqueue.py
"""

import asyncio

import jobs
from arq import create_pool

import tasktrace


async def main():
    pool = await create_pool(jobs.WorkerSettings.redis_settings)
    with tasktrace.BackgroundTask(name="nightly reports", group="Reports"):
        for report_id in range(1, 4):
            await pool.enqueue_job("build_report", report_id)
            await pool.enqueue_job("upload", report_id)
    await pool.aclose()
    print("enqueued 6 jobs")


asyncio.run(main())
