"""Per-call cost of the core API: ns per call, median of many repeats.

Run: ``python benchmarks/bench_api.py [--repeats 31] [--number 20000]``

Variants are interleaved round-robin within each repeat, so drift in the machine's speed
affects them alike; overheads are reported against the bare function measured in the same
run. Finished records go to the default recorder (bounded buffer, exact aggregates, the
harvest thread) with a reporter that discards what it is given: the figures include the
recorder's work, garbage collection and the harvest thread's share of the GIL, but no I/O.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import wrapt
from _bench import discarding_recorder, print_header, print_rows  # benchmarks/_bench.py

import tasktrace
from tasktrace._state import STATE


def bare(x: int) -> int:
    return x


def _passthrough(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
    return wrapped(*args, **kwargs)


wrapt_noop = wrapt.FunctionWrapper(bare, _passthrough)
task = tasktrace.background_task()(bare)
trace = tasktrace.function_trace()(bare)


@tasktrace.background_task()
def task_with_10_traces(x: int) -> int:
    for _ in range(10):
        trace(x)
    return x


def bare_with_10_calls(x: int) -> int:
    for _ in range(10):
        bare(x)
    return x


def _time_loop(func: Callable[[int], int], number: int) -> float:
    start = time.perf_counter_ns()
    for i in range(number):
        func(i)
    return (time.perf_counter_ns() - start) / number


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args(argv)

    recorder = discarding_recorder()

    def disabled(x: int) -> int:
        return task(x)

    variants: Dict[str, Callable[[int], int]] = {
        "bare function": bare,
        "wrapt.FunctionWrapper no-op": wrapt_noop,
        "@background_task (recording)": task,
        "@background_task (agent disabled)": task,
        "task with 10 function traces": task_with_10_traces,
        "task body with 10 plain calls": bare_with_10_calls,
    }
    samples: Dict[str, List[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for label, func in variants.items():
            STATE.enabled = "disabled" not in label
            samples[label].append(_time_loop(func, args.number))
    STATE.enabled = True
    recorder.shutdown(5.0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    base = med["bare function"]
    print(f"python {sys.version.split()[0]}, wrapt {wrapt.__version__}, pid {os.getpid()}")
    print(f"median of {args.repeats} repeats x {args.number} calls, ns per call")
    print_header("call")
    print_rows(med, med, "bare function")
    per_trace = (med["task with 10 function traces"] - med["task body with 10 plain calls"]) - (
        med["@background_task (recording)"] - base
    )
    print(f"{'=> each function trace (overhead)':40s} {per_trace / 10:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
