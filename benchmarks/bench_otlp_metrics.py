"""OTLP metrics benchmark: the bytes each harvest sends, and the harvest thread's CPU time
per harvest with metrics on versus off.

Usage::

    python benchmarks/bench_otlp_metrics.py [--repeats 21] [--harvests 10]

For 10 and for 1,000 task names (each name with 100 or 5 calls per harvest, durations
log-normal around 20 ms, one call in ten an error), a harvest's batch (records, exact
aggregates, drops) is exported by the real ``OtlpReporter`` and its ``otlp_metrics``
companion through an ``httpx.MockTransport`` that answers 200 and keeps the bodies (no
network: the figures are the encoding, compression and bookkeeping the harvest thread
does, and the bytes on the wire).

1. Bytes per harvest: the metrics request's body (gzip, as sent; and uncompressed) in
   OTLP/JSON and OTLP/protobuf, after ``--harvests`` harvests (cumulative series carry
   every bucket seen since the start, so this is the steady state), next to the spans'
   body of the same harvest.
2. CPU per harvest: ``time.thread_time()`` of exporting one harvest with the spans only
   ("metrics off": what a recorder without the companion does) and with spans and metrics
   ("metrics on"); the median of ``--repeats`` harvests, and the difference.

Nothing here runs on the instrumented call: the metrics are built from the aggregates the
recorder makes anyway (the SQLite store uses the same ones).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from typing import Dict, List, Tuple

import httpx

from tasktrace.config import Settings, parse
from tasktrace.recorder._aggregation import aggregate
from tasktrace.records import DropCount, ErrorRecord, TransactionRecord
from tasktrace.reporters.base import Batch
from tasktrace.reporters.otlp import OtlpReporter


class _Sink:
    """Answers 200 and keeps the size of each body, by signal."""

    def __init__(self) -> None:
        self.sizes: Dict[str, List[int]] = {"traces": [], "metrics": []}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        signal = "metrics" if request.url.path.endswith("/v1/metrics") else "traces"
        self.sizes[signal].append(len(request.content))
        return httpx.Response(200, json={})


def _records(names: int, calls: int, rng: random.Random) -> List[TransactionRecord]:
    now = time.time()
    pid, thread = os.getpid(), threading.get_ident()
    out = []
    for n in range(names):
        for _ in range(calls):
            duration = rng.lognormvariate(-3.9, 0.8)  # median about 20 ms
            error = rng.random() < 0.1
            out.append(
                TransactionRecord(
                    app="bench",
                    name=f"jobs.module{n // 50}:task_{n}",
                    group="Function",
                    background=True,
                    start=now,
                    duration=duration,
                    exclusive=duration,
                    cpu_time=None,
                    pid=pid,
                    thread_id=thread,
                    errors=(ErrorRecord("builtins:ValueError", "bad", "", now),) if error else (),
                    attributes={},
                    segments=(),
                    trace_id=rng.getrandbits(128),
                    span_id=rng.getrandbits(64),
                )
            )
    return out


def _batch(records: List[TransactionRecord]) -> Batch:
    return Batch(
        records=tuple(records),
        metrics=aggregate(records),
        drops=(DropCount("bench", "buffer_full", 3),),
        pid=os.getpid(),
    )


def _reporter(settings: Settings, sink: _Sink) -> OtlpReporter:
    return OtlpReporter(
        settings,
        endpoint="http://127.0.0.1:4318",
        timeout=5.0,
        transport=httpx.MockTransport(sink),
        sleep=lambda seconds: None,
    )


def _bytes(names: int, calls: int, harvests: int, protocol: str, gzip: bool) -> Tuple[int, int]:
    """(metrics body, spans body) of the last of ``harvests`` harvests, in bytes."""
    env = {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": protocol}
    if not gzip:
        env["OTEL_EXPORTER_OTLP_COMPRESSION"] = "none"
    sink = _Sink()
    spans = _reporter(parse({}, "bench.toml", env=env), sink)
    rng = random.Random(1)
    for _ in range(harvests):
        batch = _batch(_records(names, calls, rng))
        spans.export(batch)
        spans.metrics.export(batch)
    return sink.sizes["metrics"][-1], sink.sizes["traces"][-1]


def _cpu(names: int, calls: int, repeats: int, metrics: bool) -> float:
    """Median thread CPU seconds of exporting one harvest."""
    sink = _Sink()
    spans = _reporter(Settings(), sink)
    rng = random.Random(2)
    batches = [_batch(_records(names, calls, rng)) for _ in range(4)]
    times = []
    for i in range(repeats + 3):  # three warm-up harvests
        batch = batches[i % len(batches)]
        started = time.thread_time()
        spans.export(batch)
        if metrics:
            spans.metrics.export(batch)
        elapsed = time.thread_time() - started
        if i >= 3:
            times.append(elapsed)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="harvests timed per variant")
    parser.add_argument("--harvests", type=int, default=10, help="harvests before the bytes")
    args = parser.parse_args()
    shapes = ((10, 100), (1000, 5))

    print(f"bytes per harvest (after {args.harvests} harvests; metrics cumulative)")
    print(f"{'names x calls':>14s} {'metrics json':>13s} {'metrics pb':>11s} {'spans json':>11s}")
    for gzip in (True, False):
        label = "gzip" if gzip else "raw"
        for names, calls in shapes:
            json_metrics, spans_json = _bytes(names, calls, args.harvests, "http/json", gzip)
            pb_metrics, _ = _bytes(names, calls, args.harvests, "http/protobuf", gzip)
            shape = f"{names} x {calls} {label}"
            print(f"{shape:>14s} {json_metrics:13d} {pb_metrics:11d} {spans_json:11d}")

    print()
    print(f"harvest thread CPU per harvest (median of {args.repeats})")
    print(f"{'names x calls':>14s} {'metrics off':>12s} {'metrics on':>11s} {'added':>9s}")
    for names, calls in shapes:
        off = _cpu(names, calls, args.repeats, metrics=False)
        on = _cpu(names, calls, args.repeats, metrics=True)
        shape = f"{names} x {calls}"
        print(
            f"{shape:>14s} {off * 1e3:10.2f}ms {on * 1e3:9.2f}ms {(on - off) * 1e3:7.2f}ms"
            f"  ({(on - off) / off:+.0%})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
