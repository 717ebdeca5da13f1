"""How long an RQ burst worker takes to stop: the reproduction of why the test extra pins
redis-py below 8 (pyproject.toml).

Usage::

    pip install rq 'redis>=8'              # or 'redis<8' to compare
    python benchmarks/rq_shutdown.py [--runs 40] [--sleep 1] [--tasktrace] [--fixed]

Needs ``redis-server`` (Debian's package): the script starts its own on a free loopback
port, persistence off, and stops it at the end. Each run enqueues one trivial job (``operator.add``) and runs
a fresh ``rq.Worker(...).work(burst=True)`` in this process (it forks a work horse for the
job, as ``rq worker --burst`` does); the figure is how long ``work()`` took, and a run that
took more than half of ``--sleep`` was held by the pubsub thread for all of it. With
redis-py 7 the same race costs a run 1 s at most (RQ's ``join(timeout=1)``): with
``--sleep 3`` it shows as the longest run, not as held.

The mechanism: RQ 3's ``Worker.unsubscribe()`` sends UNSUBSCRIBE, whose reply wakes the
pubsub thread (``PubSub.run_in_thread(sleep_time=60)``), then calls ``stop()`` and
``join(timeout=1)``. When the thread reads that reply before the main thread has reached
``stop()`` (a window of about 100 us), it loops once more, and now unsubscribed,
``get_message`` waits ``sleep_time`` on ``subscribed_event``. redis-py 7's ``stop()`` only
cleared the loop's flag, so RQ's ``join(timeout=1)`` bounded the hold at 1 s; redis-py 8's
``stop()`` joins the thread with no timeout, so the worker waits the full 60 s. tasktrace
plays no part in it (plain RQ shows it too); a transaction recorded in the work horse
changes the timing enough to make it more frequent.

``--sleep`` lowers RQ's 60 s ``sleep_time`` so a run stays short (the hold is that long);
``--tasktrace`` initializes tasktrace first (its RQ integration on, records to a
temporary store); ``--fixed`` uses the workaround, a ``Worker`` whose ``unsubscribe()``
calls redis-py 8's ``stop(timeout=0)`` (the flag cleared, no wait) before RQ's own.
Results go to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, List


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=1.0, help="the pubsub thread's sleep_time")
    parser.add_argument("--tasktrace", action="store_true")
    parser.add_argument("--fixed", action="store_true")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="rq-shutdown-")
    if args.tasktrace:
        os.environ["XDG_DATA_HOME"] = folder
        import tasktrace

        tasktrace.initialize()
    import redis
    from redis.client import PubSub
    from rq import Queue, Worker

    run_in_thread = PubSub.run_in_thread

    def shorter(self: Any, sleep_time: float = 0.0, **kwargs: Any) -> Any:
        return run_in_thread(self, sleep_time=min(sleep_time, args.sleep), **kwargs)

    PubSub.run_in_thread = shorter  # type: ignore[method-assign]

    class FixedWorker(Worker):  # type: ignore[misc]
        def unsubscribe(self) -> None:
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop(timeout=0)
            super().unsubscribe()

    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    try:
        connection = redis.Redis(port=port)
        for _ in range(100):
            try:
                connection.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        queue = Queue("default", connection=connection)
        times: List[float] = []
        for i in range(args.runs):
            queue.enqueue("operator.add", i, 1)
            worker = (FixedWorker if args.fixed else Worker)([queue], connection=connection)
            started = time.monotonic()
            worker.work(burst=True, logging_level="WARNING")
            times.append(time.monotonic() - started)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
    held = sum(t > args.sleep / 2 for t in times)
    print(
        f"redis-py {redis.__version__}{' tasktrace' if args.tasktrace else ''}"
        f"{' fixed' if args.fixed else ''}: {held}/{args.runs} runs held about "
        f"{args.sleep:g} s; the others took {min(times):.3f}-"
        f"{max((t for t in times if t <= args.sleep / 2), default=0):.3f} s, the longest "
        f"{max(times):.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
