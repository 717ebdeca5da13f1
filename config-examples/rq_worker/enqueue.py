"""Enqueue a few jobs for the RQ example (needs `pip install rq` and a Redis server)."""

import sys

import rq_jobs
from redis import Redis
from rq import Queue

url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379"
queue = Queue("default", connection=Redis.from_url(url))
for i in range(5):
    queue.enqueue(rq_jobs.resize_image, f"img-{i}", 640)
    queue.enqueue(rq_jobs.fail_sometimes, i)
print(f"enqueued {len(queue)} jobs")
