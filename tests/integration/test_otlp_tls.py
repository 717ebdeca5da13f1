"""The OTLP reporter against a loopback HTTPS server whose certificate it cannot verify.

The certificate is self-signed, made with the ``openssl`` command-line tool (the test is
skipped when it is absent). A verification failure will not heal by retrying, so the
export fails at once, with one message that says why and how to fix it; with the
certificate as ``ca_bundle`` the same server is trusted.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch
from tasktrace.reporters.otlp import OtlpReporter

pytestmark = pytest.mark.integration


def _record() -> TransactionRecord:
    return TransactionRecord(
        "tls-it", "jobs:a", "Function", True, time.time(), 0.01, 0.01, None,
        os.getpid(), 1, (), {}, (), 1, 1,
    )  # fmt: skip


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[Tuple[str, Path, List[str]]]:
    """An HTTPS server on 127.0.0.1 (free port) with a fresh self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command-line tool is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    paths: List[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert, paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_certificate_failure_is_not_retried(
    https_server: Tuple[str, Path, List[str]],
) -> None:
    """An untrusted certificate fails the export at once, saying so and how to fix it."""
    url, _, paths = https_server
    sleeps: List[float] = []
    reporter = OtlpReporter(endpoint=url, timeout=10.0, sleep=sleeps.append)
    started = time.monotonic()
    result = reporter.export(Batch((_record(),)))
    reporter.shutdown()
    assert not result.success and not result.retryable and result.dropped == 1
    assert sleeps == [] and time.monotonic() - started < 5
    assert "certificate verify failed" in result.message
    assert "ca_bundle" in result.message and paths == []


def test_certificate_trusted_with_ca_bundle(https_server: Tuple[str, Path, List[str]]) -> None:
    """The same server is trusted when its certificate is the ca_bundle."""
    url, cert, paths = https_server
    reporter = OtlpReporter(endpoint=url, timeout=10.0, ca_bundle=str(cert))
    result = reporter.export(Batch((_record(),)))
    reporter.shutdown()
    assert result.success and paths == ["/v1/traces"]
