"""A soak run: 8 threads and an asyncio loop record tasks for a minute while the OTLP
collector flaps up and down; nothing is lost unsaid and memory stays flat.

Deselected by default (``-m 'not benchmark and not soak'``). Run it with::

    pytest -m soak tests/integration/test_soak.py            # 60 s
    SOAK_SECONDS=10 pytest -m soak -s tests/integration/test_soak.py

``SOAK_FLAP`` sets the seconds between collector state changes (default 2.5).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from _faults import Collector, clean_env, run_python, undelivered, write_program

pytestmark = [pytest.mark.integration, pytest.mark.soak]

_SOAK_PROGRAM = """
import asyncio, json, sys, threading, time
import tasktrace

DURATION = float(sys.argv[1])
THREADS = 8

@tasktrace.background_task()
def work(i):
    tasktrace.add_custom_attribute("i", i)
    return sum(range(100))

@tasktrace.background_task()
async def awork(i):
    await asyncio.sleep(0)
    return i

def rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

start = time.monotonic()
end = start + DURATION
counts = [0] * (THREADS + 1)
samples = []

def worker(k):
    n = 0
    while time.monotonic() < end:
        work(n)
        n += 1
        time.sleep(0.004)
    counts[k] = n

async def loop_main():
    n = 0
    while time.monotonic() < end:
        await asyncio.gather(*(awork(n + j) for j in range(10)))
        n += 10
        await asyncio.sleep(0.02)
    counts[THREADS] = n

def sampler():
    while time.monotonic() < end:
        samples.append((time.monotonic() - start, rss_kb()))
        time.sleep(0.25)

threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
threads.append(threading.Thread(target=sampler))
for t in threads:
    t.start()
asyncio.run(loop_main())
for t in threads:
    t.join()
print(json.dumps({"tasks": sum(counts), "samples": samples}))
"""


def _peak(samples: list[list[float]], start: float, stop: float) -> int:
    window = [kb for t, kb in samples if start <= t <= stop]
    assert window, (start, stop, samples[:5])
    return int(max(window))


@pytest.mark.soak
def test_soak_flapping_collector(tmp_path: Path) -> None:
    """Threads + asyncio for SOAK_SECONDS with the collector flapping: spans
    received + said-lost = tasks run, none twice, and RSS flat after warm-up."""
    duration = float(os.environ.get("SOAK_SECONDS", "60"))
    flap = float(os.environ.get("SOAK_FLAP", "2.5"))
    collector = Collector()
    stop = threading.Event()
    changes = [0]

    def flapper() -> None:
        while not stop.wait(flap):
            if collector.is_up:
                collector.down()
            else:
                collector.up()
            changes[0] += 1
        collector.up()  # up at the end: the final delivery has somewhere to go

    prog = write_program(tmp_path, _SOAK_PROGRAM)
    env = clean_env(
        tmp_path,
        TASKTRACE_REPORTER="otlp",
        TASKTRACE_OTLP_ENDPOINT=collector.url,
        TASKTRACE_HARVEST_INTERVAL="0.5",
        TASKTRACE_SHUTDOWN_TIMEOUT="10",
    )
    thread = threading.Thread(target=flapper, daemon=True)
    thread.start()
    try:
        run = run_python([str(prog), str(duration)], env, timeout=duration + 180)
    finally:
        stop.set()
        thread.join(10)
    try:
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        result = json.loads(run.stdout)
        tasks = int(result["tasks"])
        roots = collector.delivered_roots()
        said_lost = undelivered(run.stderr)
        rss_quarter = _peak(result["samples"], 0.2 * duration, 0.3 * duration)
        rss_end = _peak(result["samples"], 0.9 * duration, duration)
        figures = {
            "duration_s": duration,
            "collector_state_changes": changes[0],
            "tasks_run": tasks,
            "spans_received": len(roots),
            "said_lost": said_lost,
            "requests": len(collector.requests),
            "refused_or_failed_requests": sum(
                1 for r in collector.requests if not r.answer.startswith("2")
            ),
            "rss_kb_at_25pct": rss_quarter,
            "rss_kb_at_100pct": rss_end,
            "elapsed_s": round(run.elapsed, 1),
            "stderr": run.stderr.strip().splitlines()[-3:],
        }
        print("soak figures:", json.dumps(figures))
        assert tasks > 0 and changes[0] >= 2
        assert len(set(roots)) == len(roots), "a span arrived twice"
        assert len(roots) + said_lost == tasks, figures
        assert collector.parse_errors() == []
        # Flat after warm-up: some slack for allocator noise and a full buffer while down.
        assert rss_end <= rss_quarter + max(20 * 1024, rss_quarter // 4), figures
        # Bounded run time: the program's duration, then at most shutdown_timeout.
        assert run.elapsed < duration + 10 + 30, figures
    finally:
        collector.close()
        time.sleep(0)
