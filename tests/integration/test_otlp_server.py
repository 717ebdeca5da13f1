"""The OTLP reporter against a real HTTP server on 127.0.0.1 and against a real collector.

The server gunzips every body and parses it strictly into ``ExportTraceServiceRequest``
(unknown fields fail), then answers as the test scripted: 200, partial success, 400, 429
with Retry-After, 503 then 200, or a dropped connection.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from _services import rotel_agent, rotel_env, rotel_skip_reason
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch
from tasktrace.reporters.otlp import OtlpReporter

pytestmark = pytest.mark.integration

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


def _record(name: str = "jobs:send_invoices", error: bool = False) -> TransactionRecord:
    errors = (
        (ErrorRecord("builtins:ValueError", "bad", "Traceback ...", time.time()),) if error else ()
    )
    return TransactionRecord(
        "otlp-it",
        name,
        "Function",
        True,
        time.time(),
        0.02,
        0.01,
        0.005,
        os.getpid(),
        1,
        errors,
        {"tenant": "acme"},
        (SegmentRecord("db:query", "Function", 0.001, 0.005, -1),),
        0x5B8EFFF798038103D269B633813FC60C,
        0xEEE19B7EC3C1B174,
    )


class Server:
    """A scripted OTLP/HTTP endpoint; ``script`` entries are consumed one per request."""

    def __init__(self) -> None:
        self.script: List[Tuple[str, int, Dict[str, Any]]] = []
        self.received: List[ExportTraceServiceRequest] = []
        self.raw: List[Dict[str, Any]] = []
        self.errors: List[str] = []
        self.times: List[float] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                outer.times.append(time.monotonic())
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    if self.path != "/v1/traces":
                        raise ValueError(f"path {self.path}")
                    if self.headers["Content-Type"] != "application/json":
                        raise ValueError("content type")
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    message = ExportTraceServiceRequest()
                    json_format.Parse(body, message)  # strict: unknown fields fail
                    data = json.loads(body)
                    for rs in data["resourceSpans"]:
                        for span in rs["scopeSpans"][0]["spans"]:
                            assert _HEX32.match(span["traceId"]), span["traceId"]
                            assert _HEX16.match(span["spanId"]), span["spanId"]
                except Exception as exc:  # answered 400 and remembered for the test  # noqa: BLE001
                    outer.errors.append(f"{type(exc).__name__}: {exc}")
                    self.send_response(400)
                    self.end_headers()
                    return
                mode, code, extra = outer.script.pop(0) if outer.script else ("ok", 200, {})
                if mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                outer.received.append(message)
                outer.raw.append(data)
                payload = json.dumps(extra.get("body", {})).encode()
                self.send_response(code)
                for key, value in extra.get("headers", {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def test_200_parses_strictly(server: Server) -> None:
    """A batch arrives as a valid ExportTraceServiceRequest with root and child spans."""
    reporter = OtlpReporter(endpoint=server.url, timeout=5.0)
    result = reporter.export(Batch((_record(), _record("jobs:charge", error=True))))
    reporter.shutdown()
    assert result.success and result.exported == 2, result
    assert server.errors == []
    (message,) = server.received
    spans = message.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["jobs:send_invoices", "db:query", "jobs:charge", "db:query"]
    assert spans[2].status.code == 2 and spans[2].events[0].name == "exception"


def test_partial_success(server: Server) -> None:
    """partialSuccess.rejectedSpans is counted as dropped and not retried."""
    server.script.append(("ok", 200, {"body": {"partialSuccess": {"rejectedSpans": "2"}}}))
    reporter = OtlpReporter(endpoint=server.url, timeout=5.0)
    result = reporter.export(Batch((_record(), _record())))
    reporter.shutdown()
    assert result.success and result.dropped == 1
    assert len(server.received) == 1


def test_400_is_dropped_without_retry(server: Server) -> None:
    """A 400 answer drops the batch after one request."""
    server.script.append(("ok", 400, {}))
    reporter = OtlpReporter(endpoint=server.url, timeout=5.0)
    result = reporter.export(Batch((_record(),)))
    reporter.shutdown()
    assert not result.success and result.dropped == 1 and len(server.times) == 1


def test_429_retry_after(server: Server) -> None:
    """429 with Retry-After: 1 is retried about one second later."""
    server.script.append(("ok", 429, {"headers": {"Retry-After": "1"}}))
    reporter = OtlpReporter(endpoint=server.url, timeout=5.0)
    result = reporter.export(Batch((_record(),)))
    reporter.shutdown()
    assert result.success
    assert len(server.times) == 2 and 0.9 <= server.times[1] - server.times[0] < 2.5


def test_503_then_200(server: Server) -> None:
    """503 is retried and the retry succeeds."""
    server.script.append(("ok", 503, {}))
    reporter = OtlpReporter(endpoint=server.url, timeout=5.0)
    assert reporter.export(Batch((_record(),))).success
    reporter.shutdown()
    assert len(server.times) == 2


def test_dropped_connection_is_retried(server: Server) -> None:
    """A connection closed without an answer is retried."""
    server.script.append(("drop", 0, {}))
    reporter = OtlpReporter(endpoint=server.url, timeout=5.0)
    result = reporter.export(Batch((_record(),)))
    reporter.shutdown()
    assert result.success, result
    assert len(server.received) == 1


def test_dead_endpoint_is_bounded() -> None:
    """Nothing listening: the export fails within its timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reporter = OtlpReporter(endpoint=f"http://127.0.0.1:{port}", timeout=1.0)
    started = time.monotonic()
    result = reporter.export(Batch((_record(),)))
    assert time.monotonic() - started < 2.0
    assert not result.success and result.retryable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_real_collector_rotel(tmp_path: Path) -> None:
    """A real collector (rotel, debug exporter) accepts the spans and logs their names."""
    agent = rotel_agent()
    if agent is None:
        pytest.skip(rotel_skip_reason())
    http_port, grpc_port = _free_port(), _free_port()
    log = open(tmp_path / "rotel.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [
            agent,
            "start",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_port}",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{grpc_port}",
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=rotel_env(),
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        if proc.poll() is not None:
            # e.g. an older wheel built for a newer glibc than this machine's
            log.flush()
            tail = (tmp_path / "rotel.log").read_text(errors="replace")[-300:]
            pytest.skip(f"rotel exited at start: {tail.strip()}")
        reporter = OtlpReporter(endpoint=f"http://127.0.0.1:{http_port}", timeout=5.0)
        result = reporter.export(Batch((_record("jobs:rotel_check", error=True),)))
        reporter.shutdown()
        assert result.success, result
        text = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = (tmp_path / "rotel.log").read_text(errors="replace")
            if "jobs:rotel_check" in text and "db:query" in text:
                break
            time.sleep(0.1)
        assert "jobs:rotel_check" in text and "db:query" in text, text[-2000:]
        assert "service.name: Str(otlp-it)" in text
        assert "STATUS_CODE_ERROR" in text
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
