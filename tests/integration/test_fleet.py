"""A fleet for real: several worker processes on simulated hosts export over OTLP/HTTP to
one real collector (rotel), which forwards to a strict OTLP receiver here that parses every
body into the official ``opentelemetry-proto`` messages (unknown fields fail).

The hosts, one of two ways (the test records which as its ``hosts`` property and prints it):

* ``netns`` (as root, where ``ip netns add`` works; :mod:`_netns`): each worker runs in a
  network namespace of its own, joined by a veth to a private bridge with its own address
  on a free ``10.x.y.0/24``, and in a UTS namespace whose hostname is ``host-N``; rotel
  listens on the bridge's address only. ``host.name`` is tasktrace's own detection, with
  no override; each worker writes down the hostname and addresses it sees, and the test
  checks they are its own.
* ``resource attributes`` (otherwise, or with ``TEST_NETNS=0``): every worker
  runs here, rotel on 127.0.0.1, and ``host.name=host-N`` comes through
  ``OTEL_RESOURCE_ATTRIBUTES``.

Either way ``OTEL_RESOURCE_ATTRIBUTES`` carries ``team=fleet%20test``, which must arrive
percent-decoded.

The workers' buffers are small, so most spans are evicted before a harvest; the collector
goes away in the middle of the run and comes back. Then, per worker: the metrics' totals
per task and outcome equal the tasks it ran, exactly; the spans that arrived plus the
drops it said equal them too; and no span arrives twice.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest
from _netns import Network, open_network
from _services import (
    Rotel,
    die_with_parent,
    free_port,
    rotel_agent,
    rotel_skip_reason,
    stop,
    wait_until,
)
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

pytestmark = pytest.mark.integration

WORKERS = 3
#: Tasks per worker in each of the three phases (before, during and after the outage).
PER_PHASE = 1500

WORKER = """
import json, os, pathlib, socket, sys, time
import tasktrace

tasktrace.initialize()

@tasktrace.background_task(name="jobs:charge")
def charge(i):
    if i % 7 == 0:
        raise ValueError("declined")

@tasktrace.background_task(name="jobs:email")
def email(i):
    pass

here = pathlib.Path(sys.argv[1])


def ipv4_addresses():
    # The IPv4 address of every interface this process sees (SIOCGIFADDR), or None.
    try:
        import fcntl, struct

        out = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _, name in socket.if_nameindex():
                try:
                    ifreq = struct.pack("256s", name.encode()[:15])
                    packed = fcntl.ioctl(sock.fileno(), 0x8915, ifreq)
                except OSError:  # no IPv4 address on this interface
                    continue
                out.append(socket.inet_ntoa(packed[20:24]))
        return sorted(out)
    except (ImportError, OSError, AttributeError):  # not Linux
        return None


(here / "identity.json").write_text(
    json.dumps({"hostname": socket.gethostname(), "addresses": ipv4_addresses()})
)
ran = {}
for phase in (1, 2, 3):
    while not (here / f"go{phase}").exists():
        time.sleep(0.02)
    for i in range(PER_PHASE):
        for task, name in ((charge, "jobs:charge"), (email, "jobs:email")):
            outcome = "ok"
            try:
                task(i)
            except ValueError:
                outcome = "error"
            ran[f"{name} {outcome}"] = ran.get(f"{name} {outcome}", 0) + 1
    tasktrace.flush(5.0)  # in phase 2 the collector is down: this harvest fails
    (here / "ran.json").write_text(json.dumps(ran))
    (here / f"done{phase}").touch()
"""

CONFIG = """
app_name = "fleet"
harvest_interval = 0.2
buffer_size = 100
shutdown_timeout = 5.0
[reporter]
type = "otlp"
"""


class Receiver:
    """The backend behind the collector: a strict OTLP/HTTP receiver (protobuf or JSON)."""

    def __init__(self) -> None:
        self.errors: List[str] = []
        self.span_ids: List[bytes] = []
        self.spans_by_host: Dict[str, int] = {}
        #: (service.instance.id, task.name, task.outcome) -> latest cumulative count.
        self.counts: Dict[Tuple[str, str, str], Tuple[int, int]] = {}
        #: (service.instance.id, reason) -> latest cumulative count.
        self.dropped: Dict[Tuple[str, str], Tuple[int, int]] = {}
        self.hosts: Dict[str, str] = {}  # service.instance.id -> host.name
        self.teams: Set[str] = set()  # every resource's "team"
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    kind = {
                        "/v1/traces": ExportTraceServiceRequest,
                        "/v1/metrics": ExportMetricsServiceRequest,
                    }[self.path]
                    message = kind()
                    if "json" in (self.headers.get("Content-Type") or ""):
                        json_format.Parse(body, message)  # strict: unknown fields fail
                    else:
                        message.ParseFromString(body)
                    with outer.lock:
                        outer.take(message)
                except Exception as exc:  # answered 400 and remembered  # noqa: BLE001
                    outer.errors.append(f"{self.path}: {type(exc).__name__}: {exc}")
                    self.send_response(400)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def take(self, message: Any) -> None:
        if isinstance(message, ExportTraceServiceRequest):
            for rs in message.resource_spans:
                resource = _attrs(rs.resource.attributes)
                host = resource["host.name"]
                self.teams.add(resource.get("team", ""))
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.span_ids.append(span.span_id)
                        self.spans_by_host[host] = self.spans_by_host.get(host, 0) + 1
            return
        for rm in message.resource_metrics:
            resource = _attrs(rm.resource.attributes)
            instance = resource["service.instance.id"]
            self.hosts[instance] = resource["host.name"]
            self.teams.add(resource.get("team", ""))
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "tasktrace.task.duration":
                        hist = metric.exponential_histogram
                        assert hist.aggregation_temporality == 2
                        for p in hist.data_points:
                            attrs = _attrs(p.attributes)
                            assert sum(p.positive.bucket_counts) + p.zero_count == p.count
                            key = (instance, attrs["task.name"], attrs["task.outcome"])
                            self._latest(self.counts, key, p.time_unix_nano, p.count)
                    elif metric.name == "tasktrace.dropped":
                        assert metric.sum.is_monotonic
                        for p in metric.sum.data_points:
                            key2 = (instance, _attrs(p.attributes)["reason"])
                            self._latest(self.dropped, key2, p.time_unix_nano, p.as_int)

    @staticmethod
    def _latest(table: Dict[Any, Tuple[int, int]], key: Any, when: int, value: int) -> None:
        """Keep the newest cumulative value; a cumulative series never goes down."""
        old = table.get(key)
        if old is None or when >= old[0]:
            assert old is None or value >= old[1], (key, old, value)
            table[key] = (when, value)

    def totals(self) -> Dict[str, Dict[str, int]]:
        """Per host: 'name outcome' -> the latest cumulative count."""
        with self.lock:
            out: Dict[str, Dict[str, int]] = {}
            for (instance, name, outcome), (_, count) in self.counts.items():
                host = self.hosts[instance]
                out.setdefault(host, {})[f"{name} {outcome}"] = count
            return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _attrs(attributes: Any) -> Dict[str, str]:
    out = {}
    for a in attributes:
        value = a.value
        out[a.key] = value.string_value if value.HasField("string_value") else str(value.int_value)
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def network() -> Iterator[Tuple[Optional[Network], str]]:
    """The simulated hosts' network, or None and why not; always removed afterwards."""
    net, why = open_network([f"host-{n}" for n in range(WORKERS)])
    try:
        yield net, why
    finally:
        if net is not None:
            net.close()


def _collector(agent: str, log: Path, host: str, port: int, receiver: Receiver) -> Rotel:
    collector = Rotel(
        agent,
        log,
        host=host,
        http_port=port,
        exporter=[
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            receiver.url,
            "--otlp-exporter-protocol",
            "http",
            "--batch-timeout",
            "50ms",
        ],
    )
    if not wait_until(lambda: collector.listening() or collector.proc.poll() is not None, 10):
        pytest.skip(f"rotel did not listen within 10 s: {collector.log()[-500:]}")
    if collector.proc.poll() is not None:
        pytest.skip(f"rotel exited at start: {collector.log()[-500:]}")
    return collector


def _undelivered(stderr: str, reporter: str) -> int:
    """What the exit warning says was not delivered to ``reporter`` (0 if nothing)."""
    match = re.search(
        rf"(\d+) of \d+ transactions of process \d+ were not delivered to {reporter} \(", stderr
    )
    return int(match.group(1)) if match else 0


def test_fleet_counts_every_task_through_a_collector_outage(
    tmp_path: Path,
    receiver: Receiver,
    network: Tuple[Optional[Network], str],
    record_property: Any,
) -> None:
    """Three workers on their own hosts (network and UTS namespaces as root, else
    ``host.name`` by resource attribute), one rotel, small buffers, an outage in the
    middle: metric totals equal the tasks run, spans + said drops equal them, nothing
    arrives twice."""
    agent = rotel_agent()
    if agent is None:
        pytest.skip(rotel_skip_reason())
    net, why = network
    path = "netns" if net is not None else f"resource attributes ({why})"
    record_property("hosts", path)
    print(f"simulated hosts: {path}")
    own_hostname = socket.gethostname()
    listen = net.gateway if net is not None else "127.0.0.1"
    port = free_port(listen)
    log = tmp_path / "rotel.log"
    collector = _collector(agent, log, listen, port, receiver)
    script = tmp_path / "worker.py"
    script.write_text(WORKER.replace("PER_PHASE", str(PER_PHASE)))
    workers: List[Tuple[Path, subprocess.Popen[bytes]]] = []
    try:
        for n in range(WORKERS):
            here = tmp_path / f"host-{n}"
            here.mkdir()
            (here / "tasktrace.toml").write_text(CONFIG)
            env = {
                "PATH": "/usr/bin:/bin",
                # A checkout's tasktrace when the tests run from one (PYTHONPATH=src).
                **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_EXPORTER_OTLP_TIMEOUT": "400",
                # rotel (0.0.1-alpha10) drops every histogram it receives as JSON.
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
                # On a host of its own the worker finds its name; here it is told it.
                "OTEL_RESOURCE_ATTRIBUTES": "team=fleet%20test"
                if net is not None
                else f"host.name=host-{n},team=fleet%20test",
            }
            argv = [sys.executable, str(script), str(here)]
            proc = subprocess.Popen(
                net.hosts[n].command(argv) if net is not None else argv,
                cwd=here,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent,  # a killed pytest leaves no worker behind
            )
            workers.append((here, proc))

        def phase(k: int) -> None:
            for here, _ in workers:
                (here / f"go{k}").touch()
            assert wait_until(lambda: all((h / f"done{k}").exists() for h, _ in workers), 30)

        phase(1)  # each worker flushed: what it sent has reached rotel
        # Rotel forwards in batches: wait until the receiver has what rotel took.
        before = -1
        while before != len(receiver.span_ids):
            before = len(receiver.span_ids)
            wait_until(lambda: False, 0.5)
        collector.close()  # the outage: connections are refused
        phase(2)  # tasks run; span exports fail, metrics are kept
        collector = _collector(agent, log, listen, port, receiver)
        phase(3)
        results = []
        for here, proc in workers:
            _, stderr = proc.communicate(timeout=30)
            ran = json.loads((here / "ran.json").read_text())
            results.append((here.name, ran, stderr.decode(errors="replace"), proc.returncode))
        expected = {host: ran for host, ran, _, _ in results}
        wait_until(lambda: receiver.totals() == expected, 15)
    finally:
        for _, proc in workers:
            if proc.poll() is None:
                stop(proc)  # type: ignore[arg-type]
        collector.close()
    assert not receiver.errors, receiver.errors[:3]
    # Each worker was where the path says: on a host of its own, or here.
    for n, (here, _) in enumerate(workers):
        identity = json.loads((here / "identity.json").read_text())
        if net is not None:
            assert identity == {
                "hostname": f"host-{n}",
                "addresses": sorted(["127.0.0.1", net.hosts[n].address]),
            }
        else:
            assert identity["hostname"] == own_hostname
    assert socket.gethostname() == own_hostname  # the namespaces' hostnames stayed in them
    assert set(receiver.hosts.values()) == {f"host-{n}" for n in range(WORKERS)}
    assert receiver.teams == {"fleet test"}  # percent-decoded, on every resource
    assert receiver.totals() == expected, collector.log()[-2000:]
    assert len(set(receiver.span_ids)) == len(receiver.span_ids)  # nothing twice
    for host, ran, stderr, code in results:
        assert code == 0, stderr[-2000:]
        tasks = sum(ran.values())
        assert tasks == 3 * 2 * PER_PHASE
        said = _undelivered(stderr, "otlp")
        assert said > 0, stderr  # evictions and the outage cost spans, and it was said
        assert receiver.spans_by_host.get(host, 0) + said == tasks, stderr[-2000:]
        assert "otlp:export_failed" in stderr  # the outage, named
        assert _undelivered(stderr, "otlp_metrics") == 0, stderr[-2000:]
    # The drops said over OTLP too (all but the final harvest's, which the exit says).
    reasons: Set[str] = {reason for _, reason in receiver.dropped}
    assert {"buffer_full", "otlp:export_failed"} <= reasons
