"""Per-item cost of wrapped generators and async generators: ns per item, median of repeats.

Run: ``python benchmarks/bench_generators.py [--repeats 31] [--items 20000]``

Each variant iterates one generator of ``--items`` items per repeat (its creation, and the
transaction's, spread over the items). Variants are interleaved round-robin within each
repeat, so drift in the machine's speed affects them alike; overheads are against the plain
generator measured in the same run. Sync and async variants:

* plain: a generator function, undecorated;
* ``yield from``: a plain generator delegating to another (for async generators, which
  cannot delegate, ``async for ...: yield``): the cost of one more generator in the chain;
* traced: a ``@function_trace`` generator iterated inside a task (one segment over its
  whole iteration; the segment is current only while the generator runs, so each step
  sets and resets the current node);
* task: a ``@background_task`` generator (one transaction over its whole iteration).

Finished records go to the default recorder with a reporter that discards them, as in
``bench_api.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable, Dict, List

from _bench import discarding_recorder, print_header, print_rows  # benchmarks/_bench.py

import tasktrace


def plain(n: int) -> Iterator[int]:
    for i in range(n):  # noqa: UP028 - one Python step per item, as in a user's generator
        yield i


def delegating(n: int) -> Iterator[int]:
    return (yield from plain(n))


traced = tasktrace.function_trace(name="rows")(plain)
task = tasktrace.background_task(name="rows-task")(plain)


async def aplain(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def adelegating(n: int) -> AsyncIterator[int]:
    async for item in aplain(n):
        yield item


atraced = tasktrace.function_trace(name="arows")(aplain)
atask = tasktrace.background_task(name="arows-task")(aplain)


def _in_task(make: Callable[[int], Iterator[int]]) -> Callable[[int], Iterator[int]]:
    def run(n: int) -> Iterator[int]:
        with tasktrace.BackgroundTask(name="bench"):
            yield from make(n)

    return run


def _time_sync(make: Callable[[int], Iterator[int]], items: int) -> float:
    start = time.perf_counter_ns()
    for _ in make(items):
        pass
    return (time.perf_counter_ns() - start) / items


async def _time_async(make: Callable[[int], AsyncIterator[int]], items: int, traced: bool) -> float:
    start = time.perf_counter_ns()
    if traced:
        with tasktrace.BackgroundTask(name="bench"):
            async for _ in make(items):
                pass
    else:
        async for _ in make(items):
            pass
    return (time.perf_counter_ns() - start) / items


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args(argv)

    recorder = discarding_recorder()

    sync_variants: Dict[str, Callable[[int], Iterator[int]]] = {
        "plain generator": plain,
        "yield from delegating generator": delegating,
        "traced generator in a task": _in_task(traced),
        "generator background_task": task,
    }
    async_variants: Dict[str, Any] = {
        "plain async generator": (aplain, False),
        "async for delegating async generator": (adelegating, False),
        "traced async generator in a task": (atraced, True),
        "async generator background_task": (atask, False),
    }
    samples: Dict[str, List[float]] = {k: [] for k in [*sync_variants, *async_variants]}

    async def run_async() -> None:
        for label, (make, in_task) in async_variants.items():
            samples[label].append(await _time_async(make, args.items, in_task))

    loop = asyncio.new_event_loop()
    try:
        for _ in range(args.repeats):
            for label, make in sync_variants.items():
                samples[label].append(_time_sync(make, args.items))
            loop.run_until_complete(run_async())
    finally:
        loop.close()
    recorder.shutdown(5.0)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}")
    print(f"median of {args.repeats} repeats x {args.items} items, ns per item")
    print_header("item")
    print_rows(med, sync_variants, "plain generator")
    print_rows(med, async_variants, "plain async generator")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
