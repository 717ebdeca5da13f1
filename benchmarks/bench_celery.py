"""A Celery worker's throughput: plain, with tasktrace's Celery integration, and with
OpenTelemetry's ``opentelemetry-instrumentation-celery``, in one run.

Usage::

    pip install opentelemetry-sdk opentelemetry-instrumentation-celery   # for the third column
    python benchmarks/bench_celery.py [--tasks 10000] [--repeats 3]

Needs ``redis-server`` (Debian's package): the benchmark starts its own on a free loopback
port, persistence off, and stops it at the end. For each variant and repeat (interleaved
round-robin), ``--tasks`` trivial tasks are put on a fresh Redis database, then a fresh
worker process (``app.worker_main``: the real consumer loop, ``--pool solo``, prefetch as
Celery's default) drains them; the figure is tasks divided by the time from the worker's
``worker_ready`` signal to the end of the last task. The median of the repeats is printed.

* plain: Celery alone;
* signals: no-op receivers on the seven Celery signals tasktrace connects: what Celery's
  own signal dispatch costs any integration built on its signals, OpenTelemetry's too;
* tasktrace: ``tasktrace.initialize()`` before Celery is imported (what ``run-program``
  does), every task a transaction through the Celery integration, delivered by the
  default recorder to a reporter that counts and discards (``benchmarks/_bench.py``);
* opentelemetry: ``CeleryInstrumentor().instrument()`` with an SDK ``TracerProvider``,
  a ``BatchSpanProcessor`` and a counting no-op exporter.

A variant's figure is printed only if it is shown to have recorded every task (the
reporter's or exporter's count after a flush). Target: tasktrace's slowdown of the worker
is at most a tenth of OpenTelemetry's. Results go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("plain", "signals", "tasktrace", "opentelemetry")
#: Variants that record nothing: their figures need no confirmation.
UNRECORDED = ("plain", "signals")
TARGET = 0.1

#: The worker process: one variant, one repeat. argv: variant, broker URL, tasks, out file.
WORKER = r"""
import json
import os
import sys
import time

variant, broker, total, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
counted = {"n": 0}

if variant == "tasktrace":
    sys.path.insert(0, os.environ["BENCH_DIR"])
    import tasktrace
    from _bench import DiscardReporter
    from tasktrace._state import STATE
    from tasktrace.config import Settings
    from tasktrace.recorder import HarvestRecorder

    class Counting(DiscardReporter):
        def export(self, batch):
            counted["n"] += sum(1 for r in batch.records if r.group == "Celery")
            return super().export(batch)

    tasktrace.initialize()
    recorder = HarvestRecorder(Settings(), reporters=[Counting()], install_process_hooks=False)
    STATE.set_recorder(recorder)
elif variant == "signals":
    # The floor of any signal-based integration: no-op receivers on the signals tasktrace
    # connects, so Celery dispatches them as it does tasktrace's.
    from celery import signals as _signals

    for _signal in (_signals.task_prerun, _signals.task_postrun, _signals.task_failure,
                    _signals.task_retry, _signals.task_received, _signals.before_task_publish,
                    _signals.after_task_publish):
        _signal.connect(lambda **_: None, weak=False)
elif variant == "opentelemetry":
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Counting(SpanExporter):
        def export(self, spans):
            counted["n"] += sum(1 for s in spans if s.name.startswith("run/"))
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Counting()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()

from celery import Celery, signals

app = Celery("bench", broker=broker)
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False
state = {"done": 0, "t0": None}


@signals.worker_ready.connect
def ready(**_):
    state["t0"] = time.perf_counter()


def finish():
    elapsed = time.perf_counter() - state["t0"]
    if variant == "tasktrace":
        tasktrace.flush(30)
    elif variant == "opentelemetry":
        provider.force_flush(30000)
    with open(out, "w") as handle:
        json.dump({"seconds": elapsed, "recorded": counted["n"]}, handle)
    os._exit(0)


@app.task(name="bench.noop")
def noop():
    state["done"] += 1
    if state["done"] == total:
        # After this task's own instrumentation has finished: from the postrun signal.
        signals.task_postrun.connect(lambda **_: finish(), weak=False)


if __name__ == "__main__":
    app.worker_main(["worker", "--pool", "solo", "--loglevel", "error", "--without-mingle",
                     "--without-gossip", "--without-heartbeat"])
"""

FILL = r"""
import sys
from celery import Celery

app = Celery("bench", broker=sys.argv[1])
app.conf.broker_connection_retry_on_startup = True
with app.producer_or_acquire() as producer:
    for _ in range(int(sys.argv[2])):
        app.send_task("bench.noop", producer=producer)
"""


def _log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--databases",
            "64",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def _run_one(variant: str, broker: str, tasks: int, workdir: str) -> Dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env["BENCH_DIR"] = HERE
    env["TASKTRACE_REPORTER"] = "console"  # replaced by the counting recorder; never used
    subprocess.run(
        [sys.executable, "-c", FILL, broker, str(tasks)],
        check=True,
        env=env,
        cwd=workdir,
        timeout=600,
    )
    out = os.path.join(workdir, f"{variant}.json")
    script = os.path.join(workdir, "bench_worker.py")
    subprocess.run(
        [sys.executable, script, variant, broker, str(tasks), out],
        check=True,
        env=env,
        cwd=workdir,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )
    with open(out) as handle:
        result: Dict[str, Any] = json.load(handle)
    os.unlink(out)
    return result


def _have_otel() -> Optional[str]:
    try:
        import opentelemetry.instrumentation.celery
        import opentelemetry.sdk  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc})"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    variants = list(VARIANTS)
    missing = _have_otel()
    if missing:
        _log(f"opentelemetry: {missing}; measuring plain and tasktrace only")
        variants.remove("opentelemetry")
    samples: Dict[str, List[float]] = {v: [] for v in variants}
    confirmed: Dict[str, bool] = dict.fromkeys(variants, True)
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "bench_worker.py"), "w") as handle:
            handle.write(WORKER)
        redis, port = _start_redis(workdir)
        try:
            db = 0
            for repeat in range(args.repeats):
                for variant in variants:
                    db += 1
                    broker = f"redis://127.0.0.1:{port}/{db}"
                    result = _run_one(variant, broker, args.tasks, workdir)
                    rate = args.tasks / result["seconds"]
                    samples[variant].append(rate)
                    if variant not in UNRECORDED and result["recorded"] != args.tasks:
                        confirmed[variant] = False
                    _log(
                        f"repeat {repeat + 1} {variant:14s} {rate:9.0f} tasks/s "
                        f"(recorded {result['recorded']})"
                    )
        finally:
            redis.terminate()
            redis.wait(10)
    medians = {v: statistics.median(s) for v, s in samples.items()}
    _log(
        f"\nCelery solo worker, Redis broker, {args.tasks} trivial tasks, median of "
        f"{args.repeats} (tasks/s; slowdown = extra time per task against plain)"
    )
    per_task = {v: 1e6 / m for v, m in medians.items()}
    for variant in variants:
        if variant not in UNRECORDED and not confirmed[variant]:
            _log(f"{variant:14s} not shown: it did not record every task")
            continue
        extra = per_task[variant] - per_task["plain"]
        _log(
            f"{variant:14s} {medians[variant]:9.0f} tasks/s  {per_task[variant]:7.1f} us/task"
            f"  +{extra:6.1f} us/task"
        )
    if "opentelemetry" in medians and all(confirmed.values()):
        ours = per_task["tasktrace"] - per_task["plain"]
        theirs = per_task["opentelemetry"] - per_task["plain"]
        ratio = ours / theirs if theirs > 0 else float("inf")
        verdict = "yes" if ratio <= TARGET else "no"
        _log(
            f"tasktrace slowdown / OpenTelemetry slowdown = {ratio:.3f} "
            f"(target <= {TARGET}): {verdict}"
        )
        if "signals" in per_task and theirs > 0:
            floor = (per_task["signals"] - per_task["plain"]) / theirs
            _log(
                f"no-op signal receivers' slowdown / OpenTelemetry slowdown = {floor:.3f} "
                "(Celery's dispatch of the signals alone)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
