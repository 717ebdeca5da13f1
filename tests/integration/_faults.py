"""Shared helpers for the fault, hostile-input and soak tests.

* :class:`Collector`: an OTLP/HTTP endpoint on 127.0.0.1 whose behaviour a test controls
  (answer, refuse with a status, hang, stream a 100 MB body, answer garbage, go down and
  come back on the same port). It parses every body strictly into an
  ``ExportTraceServiceRequest`` (``/v1/traces``) or an ``ExportMetricsServiceRequest``
  (``/v1/metrics``) and remembers the root spans of the trace requests it accepted
  (answered 2xx), so a test can check that every task arrived exactly once, and the
  metric requests apart, so that a test about spans sees only span requests.
* :func:`run_python`: run a small program in a real subprocess with a clean environment.
* :func:`undelivered`: how many transactions a process said (on stderr, at exit) it
  could not deliver (the lines "N of M transactions of process P were not delivered to
  R (reason: n, ...)"), so that "stored + said lost = tasks run" can be checked.
* :func:`stored_transactions`, :func:`stored_records`, :func:`stored_calls`: what a
  program's SQLite store holds.
"""

from __future__ import annotations

import gzip
import http.server
import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tasktrace import store
from tasktrace.records import TransactionRecord

#: What the collector does with a request. A status code (int) answers it with that code;
#: a (code, headers) pair adds headers; the strings are:
#: ``ok`` (200), ``hang`` (read the request, never answer), ``huge`` (200 with a 100 MB
#: body), ``garbage-json`` (200, text/html body), ``garbage-gzip`` (200, Content-Encoding
#: gzip that is not gzip), ``garbage-ctype`` (200, binary body with a bogus content type),
#: ``not-http`` (bytes that are not an HTTP response, then close).
Mode = Union[str, int, Tuple[int, Dict[str, str]]]

HUGE_BODY_BYTES = 100 * 1024 * 1024


@dataclass
class Request:
    """One request the collector saw."""

    path: str
    headers: Dict[str, str]
    roots: List[Tuple[str, str, str]]  # (trace id, span id, name) of the root spans
    spans: int
    answer: str
    error: str = ""


class Collector:
    """A controllable OTLP/HTTP collector on 127.0.0.1.

    ``mode`` is the default behaviour; ``script`` holds modes consumed one per trace
    request before ``mode`` applies again. Only requests answered 2xx count as delivered
    (:meth:`delivered_roots`). Metric requests (``/v1/metrics``, which every harvest
    posts next to its spans) are kept in :attr:`metric_requests`, not in
    :attr:`requests`, and answered by ``metrics_mode`` (``mode`` when None) without
    taking from the script: what a test scripts is its span requests' answers, while going
    down or hanging is the whole collector's.
    """

    def __init__(self, mode: Mode = "ok") -> None:
        self.mode: Mode = mode
        self.metrics_mode: Optional[Mode] = None
        self.script: List[Mode] = []
        self.requests: List[Request] = []
        self.metric_requests: List[Request] = []
        self.times: List[float] = []  # when each trace request came
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd: Optional[http.server.ThreadingHTTPServer] = None
        self.port = 0
        self.up()

    # -- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def up(self) -> None:
        """Listen (again, on the same port after :meth:`down`)."""
        if self._httpd is not None:
            return
        deadline = time.monotonic() + 5
        while True:
            try:
                httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        self._httpd = httpd

    def down(self) -> None:
        """Stop listening: connections are refused until :meth:`up`."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def close(self) -> None:
        self._release.set()  # hanging handlers end
        self.down()

    # -- results ----------------------------------------------------------------------

    def delivered_roots(self) -> List[Tuple[str, str, str]]:
        """Root spans of every accepted request (a duplicate appears twice)."""
        with self._lock:
            return [root for r in self.requests if r.answer.startswith("2") for root in r.roots]

    def parse_errors(self) -> List[str]:
        with self._lock:
            return [r.error for r in self.requests if r.error]

    # -- the handler ------------------------------------------------------------------

    def _next_mode(self, metrics: bool) -> Mode:
        with self._lock:
            if metrics:
                return self.mode if self.metrics_mode is None else self.metrics_mode
            return self.script.pop(0) if self.script else self.mode

    def _handler(self) -> type:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                now = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(self.path, dict(self.headers.items()), [], 0, "")
                metrics = urllib.parse.urlsplit(self.path).path.endswith("/v1/metrics")
                if not metrics:
                    outer.times.append(now)
                try:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    if metrics:
                        json_format.Parse(body, ExportMetricsServiceRequest())
                    else:
                        _parse_spans(body, request)
                except Exception as exc:  # noqa: BLE001 - a bad body is answered with an error and remembered
                    request.error = f"{type(exc).__name__}: {exc}"
                mode = outer._next_mode(metrics)
                request.answer = outer._answer_name(mode)
                if request.error and request.answer.startswith("2"):
                    request.answer = "400"
                    mode = 400
                with outer._lock:
                    (outer.metric_requests if metrics else outer.requests).append(request)
                try:
                    outer._respond(self, mode)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a huge body): as it should

        return Handler

    @staticmethod
    def _answer_name(mode: Mode) -> str:
        if isinstance(mode, int):
            return str(mode)
        if isinstance(mode, tuple):
            return str(mode[0])
        if mode in ("ok", "huge", "garbage-json", "garbage-gzip", "garbage-ctype"):
            return "200"
        return mode

    def _respond(self, handler: http.server.BaseHTTPRequestHandler, mode: Mode) -> None:
        if mode == "hang":
            self._release.wait(120)
            return
        if mode == "not-http":
            handler.wfile.write(b"\x00\xff\xfegarbage that is not HTTP\r\n\r\n")
            handler.wfile.flush()
            handler.close_connection = True
            return
        if mode == "huge":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(HUGE_BODY_BYTES))
            handler.end_headers()
            chunk = b"{" * (1024 * 1024)
            for _ in range(HUGE_BODY_BYTES // len(chunk)):
                handler.wfile.write(chunk)
            return
        headers: Dict[str, str] = {"Content-Type": "application/json"}
        payload = b"{}"
        code = 200
        if mode == "garbage-json":
            headers["Content-Type"] = "text/html"
            payload = b"<html><body>{{{ not json"
        elif mode == "garbage-gzip":
            headers["Content-Encoding"] = "gzip"
            payload = b"\x1f\x8b this is not gzip at all" * 100
        elif mode == "garbage-ctype":
            headers["Content-Type"] = "application/x-bogus; charset=ebcdic"
            payload = bytes(range(256)) * 16
        elif isinstance(mode, int):
            code = mode
            payload = b'{"message": "refused by the test collector"}'
        elif isinstance(mode, tuple):
            code, extra = mode
            headers.update(extra)
        handler.send_response(code)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _parse_spans(body: bytes, request: Request) -> None:
    """Parse a trace body strictly (unknown fields fail) and note its spans and roots."""
    message = ExportTraceServiceRequest()
    json_format.Parse(body, message)
    for rs in message.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                request.spans += 1
                if not span.parent_span_id:
                    request.roots.append((span.trace_id.hex(), span.span_id.hex(), span.name))


def dead_endpoint() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- running programs ----------------------------------------------------------------------


def clean_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """The test process's environment without TASKTRACE_*/OTEL_*, plus test defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env.update(
        TASKTRACE_DB=str(tmp_path / "tasks.db"),
        TASKTRACE_APP_NAME="faults",
        TASKTRACE_HARVEST_INTERVAL="0.1",
        TASKTRACE_SHUTDOWN_TIMEOUT="3",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def write_program(tmp_path: Path, text: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@dataclass
class Run:
    """A finished subprocess."""

    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def run_python(
    argv: Sequence[str],
    env: Dict[str, str],
    *,
    cwd: Optional[Path] = None,
    timeout: float = 60,
    preexec_fn: Optional[Callable[[], Any]] = None,
    launcher: bool = False,
) -> Run:
    """Run ``python ARGV`` (under ``python -m tasktrace run-python`` if ``launcher``)."""
    prefix = [sys.executable, "-m", "tasktrace", "run-python"] if launcher else [sys.executable]
    started = time.monotonic()
    proc = subprocess.run(
        [*prefix, *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


_NOT_DELIVERED = re.compile(
    r"(\d+) of (\d+) transactions of process (\d+) were not delivered to (\S+)(?: reporter)? \("
)


def undelivered(stderr: str, reporter: Optional[str] = None) -> int:
    """Transactions the process said (on stderr, at exit) it could not deliver: to
    ``reporter``, or to any (summed over the lines of a run with a single reporter)."""
    return sum(
        int(match.group(1))
        for match in _NOT_DELIVERED.finditer(stderr)
        if reporter is None or match.group(4) == reporter
    )


def said_recorded(stderr: str, reporter: Optional[str] = None) -> int:
    """The "of M transactions" the exit lines gave (0 when nothing was said lost)."""
    return sum(
        int(match.group(2))
        for match in _NOT_DELIVERED.finditer(stderr)
        if reporter is None or match.group(4) == reporter
    )


def stored_transactions(db: Path, where: str = "", params: Sequence[Any] = ()) -> int:
    """Transactions stored in the store's ``transaction_blocks`` (0 if there is no database)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(str(db))
    try:
        return int(
            conn.execute(
                f"SELECT COALESCE(SUM(count), 0) FROM transaction_blocks {where}", params
            ).fetchone()[0]
        )
    finally:
        conn.close()


def stored_records(db: Path) -> List[TransactionRecord]:
    """Every transaction stored in the store, decoded (none if there is no database)."""
    if not db.exists():
        return []
    conn = store.connect(str(db), readonly=True)
    try:
        return list(store.read_transactions(conn))
    finally:
        conn.close()


def stored_calls(db: Path) -> int:
    """Transactions counted in the store's exact ``metrics`` (0 if there is no database)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT COALESCE(SUM(count), 0) FROM metrics").fetchone()[0])
    finally:
        conn.close()
