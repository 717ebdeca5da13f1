"""Dramatiq actors on a Redis broker, no tasktrace in sight.

    redis-server --port 6379 &
    cd config-examples/dramatiq_app
    tasktrace-admin run-program dramatiq actors --processes 2 --threads 2
    tasktrace-admin run-program python enqueue.py      # in another shell
    tasktrace-admin report --app dramatiq-mail

tasktrace's Dramatiq integration records every message processed by its actor's name in
group ``Dramatiq``; tasktrace.toml lists one actor only to name it differently.
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(
    RedisBroker(url=os.environ.get("DRAMATIQ_BROKER_URL", "redis://127.0.0.1:6379/0"))
)


@dramatiq.actor
def send_welcome(user_id):
    return f"welcome mail to user {user_id}"


@dramatiq.actor(max_retries=1, min_backoff=10, max_backoff=10)
def sync_crm(user_id):
    if user_id % 3 == 0:
        raise ConnectionError(f"CRM down for user {user_id}")
