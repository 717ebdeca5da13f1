"""A dashboard server on 127.0.0.1 (a free port) in a thread, and a store for it written
through the store's write path, shared by the dashboard's tests."""

from __future__ import annotations

import http.client
import threading
from pathlib import Path
from typing import Dict, Tuple

from _views_store import NOW, record, write
from tasktrace.admin._ui_server import make_server
from tasktrace.records import SegmentRecord

HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def store(tmp_path: Path) -> str:
    """Two harvests of three tasks (one with a hostile name), errors and segments."""
    seg = [SegmentRecord("db <b>query</b>", "Function", 0.01, 0.2, -1)]
    return write(
        str(tmp_path / "ui.db"),
        [
            record("jobs:a", start=NOW - 7200, duration=3.0, trace_id=1, span_id=1),
            record(
                "jobs:a",
                start=NOW - 40,
                duration=1.0,
                trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
                span_id=3,
                error=("builtins:KeyError", "<b>k</b>"),
                segments=seg,
            ),
        ],
        [
            record(
                HOSTILE, start=NOW - 30, duration=0.5, trace_id=4, span_id=4, error=("x:E", HOSTILE)
            ),
            record("jobs:b", app="other", start=NOW - 20, duration=2.0, trace_id=5, span_id=5),
        ],
    )


class Server:
    def __init__(self, db: str) -> None:
        self.httpd = make_server(db, "127.0.0.1", 0)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def request(self, path: str, method: str = "GET") -> Tuple[int, Dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
