"""Send a few tasks for the Celery example (needs `pip install 'celery[redis]'` and a Redis server).

python enqueue.py [BROKER_URL]      # default: $CELERY_BROKER_URL or redis://127.0.0.1:6379/0
"""

import os
import sys

if len(sys.argv) > 1:
    os.environ["CELERY_BROKER_URL"] = sys.argv[1]

import celery_tasks  # after the assignment above: it reads CELERY_BROKER_URL

for i in range(5):
    celery_tasks.add.delay(i, 10)
    celery_tasks.flaky.delay(i)
print("sent 10 tasks")
