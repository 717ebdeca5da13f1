"""The measuring half of the peer benchmark: runs inside the peers' virtualenv.

``run.py`` starts this script with the peers' interpreter, one process per measurement:

* ``percall``: every per-call variant of every agent, interleaved round-robin in this one
  process, ``--repeats`` times; each sample is checked against what reached the agent's
  exporter (or stats) before it counts.
* ``throughput --peer P``: one thread calls P's task ``--tasks`` times, then makes P deliver
  everything (inside the timed region), and counts what was delivered.
* ``rss --peer P``: RSS growth over ``--tasks`` tasks after a warm-up, delivery included.
* ``probe``: versions of everything, as JSON.

Results are written as JSON to ``--out``; nothing is printed on stdout. The process is
expected to run in a network namespace that has only a loopback interface (``run.py``
arranges it); as a second line of defence, ``main()`` installs an audit hook that refuses
any socket connection to an address outside 127.0.0.0/8 and ::1 before any agent is
imported. Only ``tasktrace`` is needed for ``--peers tasktrace`` / ``--peer tasktrace``,
which is what ``tests/test_benchmark_smoke.py`` runs.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

Call = Callable[[int], int]

# -- no traffic but loopback ----------------------------------------------------------------


class ForeignAddressError(OSError):
    """Raised by the audit hook when code tries to reach a non-loopback address."""


_BLOCKED: List[str] = []


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # AF_UNIX paths and the like stay on this machine
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it would need DNS, which is not loopback


def _audit(event: str, args: Any) -> None:
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg") and len(args) >= 2:
        address = args[1] if event != "socket.sendmsg" else args[-1]
        if not _is_loopback(address):
            _BLOCKED.append(f"{event} {address!r}")
            raise ForeignAddressError(f"benchmark guard: refused {event} to {address!r}")


# -- helpers ---------------------------------------------------------------------------


def rss_bytes() -> int:
    """The resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def leaf(x: int) -> int:
    """The trivial function every agent instruments."""
    return x


def bare_task(x: int) -> int:
    return x


def bare_task10(x: int) -> int:
    for _ in range(10):
        leaf(x)
    return x


# -- the agents ------------------------------------------------------------------------


class Peer:
    """One agent set up to record, with a way to count what it delivered.

    ``task`` and ``task10`` are the instrumented callables; ``count()`` returns how many
    tasks (transactions / root spans) reached the agent's exporter so far, after
    ``drain()`` delivered what was pending; ``spans()`` the spans or function traces, where
    the agent lets us count them (None otherwise).
    """

    name = ""
    task: Call
    task10: Call

    def version(self) -> str:
        raise NotImplementedError

    def enable(self, on: bool) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """Deliver whatever is pending (outside the timed region in ``percall``)."""

    def finish(self) -> None:
        """Deliver everything, as the end of a timed throughput region."""
        self.drain()

    def count(self) -> int:
        raise NotImplementedError

    def spans(self) -> Optional[int]:
        return None

    def how_counted(self) -> str:
        raise NotImplementedError


class TaskTracePeer(Peer):
    """tasktrace with its default recorder and the sqlite reporter at ``TASKTRACE_DB``."""

    name = "tasktrace"

    def __init__(self, buffer_size: Optional[int] = None) -> None:
        import tasktrace
        from tasktrace._state import STATE

        if buffer_size is not None:
            # The "every row stored" variant: a buffer that holds the whole run, so no
            # record is evicted and every one is written to SQLite by the timed flush.
            self.name = "tasktrace-lossless"
            config = os.path.join(os.path.dirname(os.environ["TASKTRACE_DB"]), "lossless.toml")
            with open(config, "w") as fh:
                fh.write(
                    f'app_name = "bench"\nbuffer_size = {buffer_size}\n'
                    "[reporter]\nmax_rows_per_name = 0\n"  # no row sampling either
                )
            tasktrace.initialize(config_file=config)

        self._tt = tasktrace
        self._state = STATE
        self._db = os.environ["TASKTRACE_DB"]
        trace = tasktrace.function_trace()(leaf)

        @tasktrace.background_task(name="tt_task")
        def tt_task(x: int) -> int:
            return x

        @tasktrace.background_task(name="tt_task10")
        def tt_task10(x: int) -> int:
            for _ in range(10):
                trace(x)
            return x

        self.task = tt_task
        self.task10 = tt_task10

    def version(self) -> str:
        return str(self._tt.__version__) if hasattr(self._tt, "__version__") else _dist("tasktrace")

    def enable(self, on: bool) -> None:
        self._state.enabled = on

    def drain(self) -> None:
        if not self._tt.flush(60.0):
            raise RuntimeError("tasktrace.flush(60) did not deliver everything")

    def _query(self, sql: str) -> int:
        import sqlite3

        if not os.path.exists(self._db):
            return 0
        conn = sqlite3.connect(self._db, timeout=30)
        try:
            value = conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
        return int(value or 0)

    def count(self) -> int:
        # The metrics are exact even when rows are dropped for a full buffer; the rows
        # are counted too (``rows()``) so that a drop would show.
        return self._query("SELECT SUM(count) FROM metrics WHERE name IN ('tt_task', 'tt_task10')")

    def rows(self) -> int:
        return self._query("SELECT COALESCE(SUM(count), 0) FROM transaction_blocks")

    def spans(self) -> Optional[int]:
        return self._query("SELECT COALESCE(SUM(count), 0) FROM segment_blocks")

    def stored_rows(self, name: str) -> int:
        """Transactions stored for the task ``name``."""
        return self._query(
            f"SELECT COALESCE(SUM(count), 0) FROM transaction_blocks WHERE name = '{name}'"
        )

    def how_counted(self) -> str:
        return (
            "SUM(count) of its metrics rows and of its transaction_blocks/segment_blocks rows "
            "in the SQLite file"
        )


class NewRelicPeer(Peer):
    """New Relic's agent in developer mode: a fake collector inside the agent, no network.

    Counting: every harvest's ``metric_data`` payload reaches ``DeveloperModeClient
    .send_request`` (the fake collector); the call count of ``OtherTransaction/all`` in
    those payloads is what was delivered. Between harvests, the core application's
    ``_transaction_count`` says how many transactions were recorded.
    """

    name = "newrelic"

    def __init__(self, config_file: str) -> None:
        import newrelic.agent
        from newrelic.common import agent_http

        self._delivered = 0
        original = agent_http.DeveloperModeClient.send_request
        peer = self

        def send_request(client: Any, *args: Any, **kwargs: Any) -> Any:
            params = kwargs.get("params")
            payload = kwargs.get("payload")
            if params and params.get("method") == "metric_data" and payload:
                peer._delivered += _other_transactions(payload)
            return original(client, *args, **kwargs)

        agent_http.DeveloperModeClient.send_request = send_request  # type: ignore[method-assign]

        newrelic.agent.initialize(config_file)
        app = newrelic.agent.register_application(timeout=10.0)
        if not app.active:
            raise RuntimeError("newrelic.agent.register_application(timeout=10) did not activate")
        from newrelic.core.agent import agent_instance
        from newrelic.core.config import global_settings

        self._nr = newrelic
        self._settings = global_settings()
        self._core = agent_instance().application(app.name)

        trace = newrelic.agent.function_trace()(leaf)

        @newrelic.agent.background_task(name="nr_task")
        def nr_task(x: int) -> int:
            return x

        @newrelic.agent.background_task(name="nr_task10")
        def nr_task10(x: int) -> int:
            for _ in range(10):
                trace(x)
            return x

        self.task = nr_task
        self.task10 = nr_task10

    def version(self) -> str:
        return str(self._nr.version)

    def enable(self, on: bool) -> None:
        # What initialize() leaves when neither monitor_mode nor developer_mode is on.
        self._settings.enabled = on

    def harvest(self) -> None:
        self._core.harvest(shutdown=False, flexible=True)
        self._core.harvest(shutdown=False, flexible=False)

    def finish(self) -> None:
        self.harvest()

    def recorded(self) -> int:
        """Transactions recorded since the last default harvest."""
        return int(self._core._transaction_count)

    def harvests(self) -> int:
        return int(self._core._harvest_count)

    def count(self) -> int:
        return self._delivered

    def how_counted(self) -> str:
        return (
            "per sample: core Application._transaction_count; in total: OtherTransaction/all "
            "call counts in the metric_data payloads its developer-mode fake collector received"
        )


def _other_transactions(payload: Any) -> int:
    """``OtherTransaction/all`` calls in a New Relic ``metric_data`` payload."""
    import zlib

    data = payload
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            data = zlib.decompress(bytes(data), 47).decode("utf-8")
    if isinstance(data, str):
        data = json.loads(data)
    total = 0
    for spec, stats in data[3]:
        if spec.get("name") == "OtherTransaction/all" and not spec.get("scope"):
            total += int(stats[0])
    return total


class OTelPeer(Peer):
    """The OpenTelemetry SDK: a TracerProvider with a BatchSpanProcessor and a counting
    no-op exporter; disabled is the API's no-op tracer."""

    name = "opentelemetry"

    def __init__(self) -> None:
        from opentelemetry import trace as trace_api
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        peer = self
        self._spans = 0
        self._roots = 0

        class CountingExporter(SpanExporter):
            """Counts the spans it is handed; sends nothing."""

            def export(self, spans: Any) -> Any:
                peer._spans += len(spans)
                peer._roots += sum(1 for s in spans if s.parent is None)
                return SpanExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

        self._provider = TracerProvider()
        self._provider.add_span_processor(BatchSpanProcessor(CountingExporter()))
        self._sdk_tracer = self._provider.get_tracer("bench")
        self._noop_tracer = trace_api.NoOpTracerProvider().get_tracer("bench")
        self._tracer = self._sdk_tracer
        peer_ref = self

        def otel_task(x: int) -> int:
            with peer_ref._tracer.start_as_current_span("otel_task"):
                return x

        def otel_task10(x: int) -> int:
            tracer = peer_ref._tracer
            with tracer.start_as_current_span("otel_task10"):
                for _ in range(10):
                    with tracer.start_as_current_span("leaf"):
                        leaf(x)
                return x

        self.task = otel_task
        self.task10 = otel_task10

    def version(self) -> str:
        return _dist("opentelemetry-sdk")

    def enable(self, on: bool) -> None:
        self._tracer = self._sdk_tracer if on else self._noop_tracer

    def drain(self) -> None:
        if not self._provider.force_flush(60_000):
            raise RuntimeError("TracerProvider.force_flush() timed out")

    def count(self) -> int:
        return self._roots

    def spans(self) -> Optional[int]:
        return self._spans

    def how_counted(self) -> str:
        return "spans (and root spans) handed to a counting SpanExporter by the BatchSpanProcessor"


class DDTracePeer(Peer):
    """ddtrace's tracer with its default writer pointed at a closed loopback port, and a
    ``TraceFilter`` (its documented hook for finished traces) that counts what reaches the
    writer."""

    name = "ddtrace"

    def __init__(self) -> None:
        from ddtrace.trace import TraceFilter, tracer

        peer = self
        self._spans = 0
        self._roots = 0

        class CountingFilter(TraceFilter):
            """Counts finished traces on their way to the writer; keeps them."""

            def process_trace(self, trace: Any) -> Any:
                peer._spans += len(trace)
                peer._roots += sum(1 for s in trace if s.parent_id is None)
                return trace

        tracer.configure(trace_processors=[CountingFilter()])
        self._tracer = tracer

        def dd_task(x: int) -> int:
            with tracer.trace("dd_task"):
                return x

        def dd_task10(x: int) -> int:
            with tracer.trace("dd_task10"):
                for _ in range(10):
                    with tracer.trace("leaf"):
                        leaf(x)
                return x

        self.task = dd_task
        self.task10 = dd_task10

    def version(self) -> str:
        return _dist("ddtrace")

    def enable(self, on: bool) -> None:
        self._tracer.enabled = on

    def drain(self) -> None:
        # Nothing to wait for: the filter counts (and the writer encodes) each trace on
        # the calling thread as its root span finishes. The writer's send, every second
        # in its own thread, only meets the closed port, retries and drops the payload
        # (one line on stderr); timing ``tracer.flush()`` would time those retries.
        pass

    def count(self) -> int:
        return self._roots

    def spans(self) -> Optional[int]:
        return self._spans

    def how_counted(self) -> str:
        return "spans (and root spans) seen by a ddtrace.trace.TraceFilter placed before its writer"


def _dist(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def make_peer(name: str, nr_config: str, tasks: int = 0) -> Peer:
    if name == "tasktrace":
        return TaskTracePeer()
    if name == "tasktrace-lossless":
        return TaskTracePeer(buffer_size=tasks + 10_000)
    if name == "newrelic":
        return NewRelicPeer(nr_config)
    if name == "opentelemetry":
        return OTelPeer()
    if name == "ddtrace":
        return DDTracePeer()
    raise SystemExit(f"unknown peer {name!r}")


# -- per-call ----------------------------------------------------------------------------


def _time_loop(func: Call, number: int) -> float:
    """Nanoseconds per call of ``func`` over ``number`` calls."""
    start = time.perf_counter_ns()
    for i in range(number):
        func(i)
    return (time.perf_counter_ns() - start) / number


class Variant:
    """One line of the per-call table: a callable and what its agent must have recorded."""

    def __init__(self, label: str, peer: Optional[Peer], kind: str, func: Call) -> None:
        self.label = label
        self.peer = peer
        self.kind = kind  # "bare", "bare10", "task", "task10", "disabled"
        self.func = func
        self.number = 0
        self.samples: List[float] = []
        self.expected = 0
        self.counted = 0
        self.bad_samples: List[str] = []
        self.unchecked = 0


def _calibrate(func: Call, target_ns: float) -> int:
    _time_loop(func, 50)
    per_call = min(_time_loop(func, 200) for _ in range(3))
    number = int(target_ns / max(per_call, 1.0))
    return max(200, min(number, 200_000))


def percall(args: argparse.Namespace) -> Dict[str, Any]:
    peers = [make_peer(name, args.nr_config) for name in args.peers]
    variants: List[Variant] = [
        Variant("bare function", None, "bare", bare_task),
        Variant("bare function calling 10 plain functions", None, "bare10", bare_task10),
    ]
    for peer in peers:
        variants.append(Variant(f"{peer.name} task", peer, "task", peer.task))
        variants.append(Variant(f"{peer.name} task + 10 child traces", peer, "task10", peer.task10))
        variants.append(Variant(f"{peer.name} task, agent disabled", peer, "disabled", peer.task))

    target_ns = args.sample_ms * 1e6
    for v in variants:
        if v.peer is not None:
            v.peer.enable(v.kind != "disabled")
        v.number = _calibrate(v.func, target_ns)
        if v.peer is not None:
            v.peer.enable(True)
            v.peer.drain()

    for _ in range(args.repeats):
        for v in variants:
            peer = v.peer
            # Every sample starts from a collected heap (untimed). The agents share the
            # process, and a full collection is set off by whichever sample happens to
            # allocate past the threshold, not by whoever left the garbage: ddtrace's
            # writer holds every trace it cannot send, and without this its collections
            # (15-30 ms each here) landed in the samples of the agent that allocates the
            # most per sample. Each sample still pays for the collections its own
            # allocations cause.
            if peer is None:
                gc.collect()
                v.samples.append(_time_loop(v.func, v.number))
                continue
            enabled = v.kind != "disabled"
            peer.enable(enabled)
            peer.drain()
            gc.collect()
            before = peer.count()
            nr_before = (
                (peer.recorded(), peer.harvests()) if isinstance(peer, NewRelicPeer) else None
            )
            v.samples.append(_time_loop(v.func, v.number))
            if nr_before is not None:
                assert isinstance(peer, NewRelicPeer)
                if peer.harvests() != nr_before[1]:
                    v.unchecked += 1  # a periodic harvest reset the count mid-sample
                    got = None
                else:
                    got = peer.recorded() - nr_before[0]
            else:
                peer.drain()
                got = peer.count() - before
            peer.enable(True)
            want = v.number if enabled else 0
            v.expected += want
            if got is not None:
                v.counted += got
                if got != want:
                    v.bad_samples.append(f"recorded {got} of {want}")

    totals: Dict[str, Any] = {}
    for peer in peers:
        peer.enable(True)
        if isinstance(peer, NewRelicPeer):
            peer.harvest()
        else:
            peer.drain()
        totals[peer.name] = {
            "tasks_delivered": peer.count(),
            "spans_delivered": peer.spans(),
            "how_counted": peer.how_counted(),
            "version": peer.version(),
        }
        if isinstance(peer, TaskTracePeer):
            totals[peer.name]["rows"] = peer.rows()
    # What each peer should have delivered in total: the timed calls plus the calibration
    # calls made while enabled, for the cross-check in run.py.
    for peer in peers:
        own = [v for v in variants if v.peer is peer]
        tasks = {
            kind: sum(v.expected + _calibration_calls(v) for v in own if v.kind == kind)
            for kind in ("task", "task10")
        }
        totals[peer.name]["tasks_expected"] = tasks["task"] + tasks["task10"]
        if isinstance(peer, TaskTracePeer):
            # Segments only (the task is the transaction), and only for the transactions
            # whose rows were stored: the SQLite reporter keeps a sample of rows per task
            # name (max_rows_per_name) while the metrics count every task exactly.
            totals[peer.name]["spans_expected"] = 10 * peer.stored_rows("tt_task10")
        elif isinstance(peer, NewRelicPeer):
            totals[peer.name]["spans_expected"] = None
        else:  # root spans and child spans
            totals[peer.name]["spans_expected"] = tasks["task"] + 11 * tasks["task10"]

    return {
        "repeats": args.repeats,
        "sample_ms": args.sample_ms,
        "variants": [
            {
                "label": v.label,
                "peer": v.peer.name if v.peer else None,
                "kind": v.kind,
                "number": v.number,
                "median_ns": statistics.median(v.samples),
                "min_ns": min(v.samples),
                "samples_ns": v.samples,
                "expected": v.expected,
                "counted": v.counted,
                "bad_samples": v.bad_samples[:5],
                "n_bad": len(v.bad_samples),
                "unchecked": v.unchecked,
            }
            for v in variants
        ],
        "totals": totals,
        "blocked_connections": _BLOCKED,
    }


def _calibration_calls(v: Variant) -> int:
    # _calibrate ran 50 + 3 x 200 calls, plus the enabled warm-up is counted by the agent.
    return 650 if v.kind != "disabled" else 0


# -- throughput and memory -----------------------------------------------------------------


def throughput(args: argparse.Namespace) -> Dict[str, Any]:
    peer = make_peer(args.peer, args.nr_config, args.tasks)
    task = peer.task
    warm = 2000
    for i in range(warm):
        task(i)
    peer.finish()
    gc.collect()
    before = peer.count()
    rows_before = peer.rows() if isinstance(peer, TaskTracePeer) else 0
    rss_before = rss_bytes()
    started = time.perf_counter()
    for i in range(args.tasks):
        task(i)
    peer.finish()
    elapsed = time.perf_counter() - started
    rss_after = rss_bytes()
    delivered = peer.count() - before
    result: Dict[str, Any] = {
        "peer": peer.name,
        "tasks": args.tasks,
        "seconds": elapsed,
        "rate": args.tasks / elapsed,
        "delivered": delivered,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "rss_growth": rss_after - rss_before,
        "how_counted": peer.how_counted(),
        "blocked_connections": _BLOCKED,
    }
    if isinstance(peer, TaskTracePeer):
        result["rows"] = peer.rows() - rows_before
    return result


def probe(args: argparse.Namespace) -> Dict[str, Any]:
    names = [
        "tasktrace",
        "newrelic",
        "opentelemetry-sdk",
        "opentelemetry-api",
        "opentelemetry-instrumentation",
        "opentelemetry-distro",
        "ddtrace",
        "wrapt",
        "httpx",
    ]
    versions = {}
    for name in names:
        try:
            versions[name] = _dist(name)
        except Exception:  # noqa: BLE001 - a version that cannot be read is shown as unknown
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "versions": versions,
    }


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("percall", "throughput", "probe"))
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--peers", nargs="*", default=["tasktrace", "newrelic", "opentelemetry", "ddtrace"]
    )
    parser.add_argument("--peer")
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--sample-ms", type=float, default=20.0)
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--nr-config", default="")
    args = parser.parse_args(argv)
    # Before any agent is imported (they are imported lazily, by make_peer()).
    sys.addaudithook(_audit)
    if args.mode == "percall":
        result = percall(args)
    elif args.mode == "throughput":
        result = throughput(args)
    else:
        result = probe(args)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
