"""``tasktrace-admin ui``: the dashboard's server on 127.0.0.1 (a free port) over real SQLite
stores written through the store's write path; its API compared with the commands' JSON
run in-process, its refusals, its headers, and the command run as a real process."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from _ui import HOSTILE, Server, store

from _views_store import NOW, record, write
from tasktrace.admin import main
from tasktrace.admin._ui_server import SECURITY_HEADERS

pytestmark = pytest.mark.integration

CSP = dict(SECURITY_HEADERS)["Content-Security-Policy"]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return store(tmp_path)


@pytest.fixture
def server(db: str) -> Iterator[Server]:
    running = Server(db)
    try:
        yield running
    finally:
        running.close()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main([*argv, "--format", "json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


@pytest.mark.parametrize(
    ("route", "argv"),
    [
        ("/api/report", ["report"]),
        (
            "/api/report?app=billing&since=1h&name=jobs:*",
            ["report", "--app", "billing", "--since", "1h", "--name", "jobs:*"],
        ),
        ("/api/errors", ["errors"]),
        ("/api/errors?app=billing&limit=1", ["errors", "--app", "billing", "--limit", "1"]),
        ("/api/errors?since=1d&name=jobs:*", ["errors", "--since", "1d", "--name", "jobs:*"]),
        ("/api/traces", ["traces"]),
        ("/api/traces?slowest=1&limit=2", ["traces", "--slowest", "--limit", "2"]),
        ("/api/traces?errors=true&app=billing", ["traces", "--errors", "--app", "billing"]),
        ("/api/traces?since=1h&name=jobs:a", ["traces", "--since", "1h", "--name", "jobs:a"]),
        (
            "/api/trace/4bf92f3577b34da6a3ce929d0e0e4736",
            ["trace", "4bf92f3577b34da6a3ce929d0e0e4736"],
        ),
        ("/api/trace/4BF92F35", ["trace", "4BF92F35"]),
    ],
)
def test_api_returns_exactly_the_commands_json(
    server: Server, db: str, capsys: pytest.CaptureFixture[str], route: str, argv: List[str]
) -> None:
    """Each API route answers the bytes the matching command prints with --format json."""
    status, headers, body = server.request(route)
    assert status == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    expected = _cli(capsys, *argv, "--db", db)
    assert body.decode("utf-8") == expected
    assert json.loads(body)  # not empty: the store has what each asks for


def test_series_counts_calls_and_errors_per_step(tmp_path: Path) -> None:
    """/api/series: step_s and a point per step of the span (empty steps too) with calls,
    errors and p50/p95 from that step's windows only."""
    db = write(
        str(tmp_path / "s.db"),
        [record("jobs:a", start=NOW - 3600, duration=0.5)],
        [record("jobs:a", start=NOW - 1800, duration=2.0, error=("x:E", "m"))],
        [record("jobs:a", start=NOW - 60, duration=0.25), record("jobs:b", start=NOW - 60)],
    )
    running = Server(db)
    try:
        status, _, body = running.request("/api/series?app=billing&name=jobs:a&step=60")
        _, _, auto = running.request("/api/series?since=2h")
    finally:
        running.close()
    assert status == 200
    series = json.loads(body)
    assert series["step_s"] == 60
    points = series["points"]
    assert all(set(p) >= {"t", "calls", "errors", "p50_ms", "p95_ms"} for p in points)
    assert all(p["t"].endswith("Z") and p["t"][17:] == "00.000Z" for p in points)
    assert 58 <= len(points) <= 61  # an hour at a minute a step, empty steps included
    busy = [(p["calls"], p["errors"], p["p50_ms"], p["p95_ms"]) for p in points if p["calls"]]
    assert busy == [(1, 0, 500.0, 500.0), (1, 1, 2000.0, 2000.0), (1, 0, 250.0, 250.0)]
    assert all(p["p50_ms"] is None and p["p95_ms"] is None for p in points if not p["calls"])
    # Without a step: the smallest that covers the window in fewer than 120 steps (two
    # hours would be 120 minutes, so 5 minutes).
    chosen = json.loads(auto)
    assert chosen["step_s"] == 300
    assert sum(p["calls"] for p in chosen["points"]) == 4


@pytest.mark.parametrize(
    "route",
    [
        "/api/report?since=bad",
        "/api/errors?limit=0",
        "/api/errors?limit=x",
        "/api/traces?slowest=maybe",
        "/api/traces?color=red",
        "/api/traces?app=a&app=b",
        "/api/series?step=0",
        "/api/series?step=1&since=30d",
        "/api/trace/zz",
        "/api/trace/4bf9",
        "/api/report?name=%ff",
    ],
)
def test_bad_parameters_get_400_with_a_json_error(server: Server, route: str) -> None:
    """A bad parameter gets 400 and {"error": ...} naming it, never a traceback."""
    status, headers, body = server.request(route)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    message = json.loads(body)["error"]
    assert message and "Traceback" not in message


@pytest.mark.parametrize(
    "route", ["/nope", "/api/nope", "/api/runnin", "/static/x.js", "/trace/a/b"]
)
def test_unknown_paths_get_404(server: Server, route: str) -> None:
    """Paths that are not the dashboard's get 404."""
    status, _, body = server.request(route)
    assert status == 404
    assert "error" in json.loads(body)


def test_an_unknown_trace_gets_404(server: Server) -> None:
    """A well-formed trace id that no stored trace has gets 404 with the lookup's message."""
    status, _, body = server.request("/api/trace/ffffffffffffffff")
    assert status == 404
    assert "ffffffffffffffff" in json.loads(body)["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head_are_answered(server: Server, method: str) -> None:
    """Any other method gets 405 with Allow: GET, HEAD, and the store is not touched."""
    status, headers, _ = server.request("/api/report", method)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


def test_head_answers_headers_without_a_body(server: Server) -> None:
    """HEAD gets the GET's status and headers, no body."""
    status, headers, body = server.request("/api/report", "HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) > 0


@pytest.mark.parametrize(
    "route",
    ["/", "/errors", "/task?app=a&task=b", "/trace/abc", "/static/app.js", "/api/report", "/nope"],
)
def test_every_response_carries_the_security_headers(server: Server, route: str) -> None:
    """CSP (no inline script or style), nosniff and no-referrer on pages, files, API and errors."""
    _, headers, _ = server.request(route)
    assert headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_pages_hold_no_inline_script_or_style_and_no_store_data(server: Server) -> None:
    """The page is static: its script and style are files, and no text from the store is in
    the HTML (it is drawn as text by the script), so a hostile name cannot become markup."""
    status, headers, body = server.request("/task?app=billing&task=" + "%3Cscript%3E")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = body.decode("utf-8")
    assert '<script src="/static/app.js" defer></script>' in html
    assert html.count("<script") == 1 and "<style" not in html and "style=" not in html
    assert "onerror" not in html and "alert" not in html
    _, js_headers, js = server.request("/static/app.js")
    assert js_headers["Content-Type"].startswith("text/javascript")
    assert b"innerHTML" not in js and b"insertAdjacentHTML" not in js and b"eval(" not in js


def test_hostile_names_are_json_strings_in_the_api(server: Server) -> None:
    """A task name holding markup comes back as a JSON string, unchanged."""
    _, _, body = server.request("/api/report")
    assert HOSTILE in [row["name"] for row in json.loads(body)]


def test_a_store_gone_while_serving_gets_503(db: str) -> None:
    """A store removed after the start gets 503 and a JSON line saying so on every route."""
    running = Server(db)
    try:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        for route in (
            "/api/report",
            "/api/errors",
            "/api/traces",
            "/api/series",
            "/api/trace/4bf92f35",
        ):
            status, _, body = running.request(route)
            assert status == 503, route
            assert "cannot read the store" in json.loads(body)["error"]
    finally:
        running.close()


def test_the_server_never_writes_to_the_store(server: Server, db: str) -> None:
    """Reading every route leaves the store's files as they were."""
    before = {p: os.stat(p).st_mtime_ns for p in (db,)}
    for route in (
        "/api/report",
        "/api/errors",
        "/api/traces",
        "/api/series",
        "/api/trace/4bf92f35",
    ):
        assert server.request(route)[0] == 200
    assert {p: os.stat(p).st_mtime_ns for p in (db,)} == before


# -- the command, as a process ------------------------------------------------------------


def _start(argv: List[str]) -> Tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasktrace", "ui", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    return proc, proc.stderr.readline()


def _url(line: str) -> Optional[str]:
    import re

    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    return match.group(0) if match else None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_command_prints_its_url_first_and_exits_0_on_a_signal(db: str, sig: int) -> None:
    """The first stderr line holds http://127.0.0.1:PORT/ (--port 0 picked it), the URL
    answers, and SIGTERM or SIGINT ends the command with status 0 and nothing on stdout."""
    proc, first = _start(["--db", db, "--port", "0"])
    try:
        url = _url(first)
        assert url is not None, first
        port = int(url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/report")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == ""
    assert "warning" not in first + err


def test_a_non_loopback_host_is_warned_about(db: str) -> None:
    """--host 0.0.0.0 says, after the URL line, that anyone who can reach it can read the data."""
    proc, first = _start(["--db", db, "--host", "0.0.0.0", "--port", "0"])
    try:
        assert first.startswith("tasktrace dashboard at http://0.0.0.0:")
        assert proc.stderr is not None
        second = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert "warning" in second and "readable by anyone who can reach it" in second
    assert proc.returncode == 0


def test_a_missing_store_exits_1_with_one_line(tmp_path: Path) -> None:
    """No store at --db: exit 1 and one line naming the path, no server."""
    missing = str(tmp_path / "none.db")
    done = subprocess.run(
        [sys.executable, "-m", "tasktrace", "ui", "--db", missing, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and missing in done.stderr
    assert not os.path.exists(missing)


def test_help_lists_the_ui_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`tasktrace-admin help` names ui, and `help ui` shows --host and --port."""
    assert main(["help"]) == 0
    assert "ui" in capsys.readouterr().out.split()
    with pytest.raises(SystemExit):
        main(["help", "ui"])
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "8765" in out


def test_only_the_ui_command_imports_the_web_server() -> None:
    """Building the command line (every other command) does not import http.server."""
    code = (
        "import sys; from tasktrace.admin import _parser; _parser(); "
        "print('http.server' in sys.modules, 'tasktrace.admin._ui_server' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr
