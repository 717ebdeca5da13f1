"""Hostile and broken input, in real programs: modules with import side effects, custom
attributes that are huge, binary or not values at all, collectors that answer with 100 MB
or garbage, secrets in headers and URLs, and plain-http endpoints to remote hosts."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest
from _faults import (
    Collector,
    clean_env,
    run_python,
    stored_records,
    undelivered,
    write_program,
)
from _launcher import Launcher

from tasktrace.reporters import otlp
from tasktrace.reporters.otlp import traces_url

pytestmark = pytest.mark.integration


@pytest.fixture
def collector() -> Iterator[Collector]:
    srv = Collector()
    yield srv
    srv.close()


# -- modules with side effects are imported by the program, not by the bootstrap -----------

_SIDE_EFFECT_MODULE = """
import os
with open(os.environ["MARKER"], "a") as marker:
    marker.write("imported\\n")

def run(x):
    return x + 1

class Jobs:
    def nightly(self):
        return "n"
"""

_SIDE_EFFECT_PROGRAM = """
import os, subprocess, sys

def lines():
    path = os.environ["MARKER"]
    return open(path).read().count("imported") if os.path.exists(path) else 0

print("before", lines(), "sidefx" in sys.modules)
# A child Python process (instrumented too) that never imports the module.
subprocess.run([sys.executable, "-c", "import json"], check=True)
print("after child", lines())
import sidefx
print("imported", lines(), sidefx.run(1), sidefx.Jobs().nightly())
import sidefx  # a second import is a no-op
print("end", lines())
"""


def test_side_effect_module_imported_only_by_the_program(launcher: Launcher) -> None:
    """A configured module is never imported before the program imports it, then once."""
    marker = launcher.cwd / "marker.txt"
    launcher.write("sidefx.py", _SIDE_EFFECT_MODULE)
    launcher.write("sidefx_unused.py", _SIDE_EFFECT_MODULE)
    launcher.write("prog.py", _SIDE_EFFECT_PROGRAM)
    launcher.write(
        "tasktrace.toml",
        """
[[background_task]]
function = "sidefx:run"
[[background_task]]
function = "sidefx:Jobs.*"
[[background_task]]
function = "sidefx_unused:run"
[[function_trace]]
function = "sidefx_unused:Jobs.nightly"
""",
    )
    result = launcher.admin("run-program", "python", "prog.py", env={"MARKER": str(marker)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "before 0 False",
        "after child 0",
        "imported 1 2 n",
        "end 1",
    ], result.stderr
    assert result.stderr == ""
    names = sorted(record["name"] for record in launcher.records())
    assert names == ["sidefx:Jobs.nightly", "sidefx:run"]
    assert marker.read_text() == "imported\n"  # the unused module was never imported


# -- custom attributes ----------------------------------------------------------------------

_ATTRIBUTES_PROGRAM = """
import sys
import tasktrace

class Weird:
    def __str__(self):
        raise RuntimeError("str of Weird")
    __repr__ = __str__
    def __hash__(self):
        raise RuntimeError("hash of Weird")

class EvilStr(str):
    def __str__(self):
        raise RuntimeError("str of EvilStr")

class EvilInt(int):
    def __str__(self):
        raise RuntimeError("str of EvilInt")
    __repr__ = __str__

class EvilFloat(float):
    def __repr__(self):
        raise RuntimeError("repr of EvilFloat")
    __str__ = __repr__

HOSTILE = [
    ("huge", "x" * 10_000_000),
    ("binary", b"\\x00\\xff" * 1000),
    ("bytearray", bytearray(10)),
    ("object", object()),
    ("weird", Weird()),
    ("none", None),
    ("nested", {"a": {"b": [1, 2, {"c": None}]}}),
    ("list", [1, "two", 3.0]),
    ("big_int", 10**5000),
    ("int128", 2**100),
    ("nan", float("nan")),
    ("inf", float("-inf")),
    ("surrogate", "bad \\udcff byte"),
    ("nul", "a\\x00b"),
    ("evil_str", EvilStr("abc")),
    ("evil_int", EvilInt(5)),
    ("evil_float", EvilFloat(1.5)),
    ("k" * 10_000_000, "huge key"),
    ("", "empty key"),
    (None, "None key"),
    (b"bytes", "bytes key"),
    (Weird(), "weird key"),
    (EvilStr("evil_key"), "evil key"),
]

@tasktrace.background_task()
def work():
    kept = []
    for key, value in HOSTILE:
        if tasktrace.add_custom_attribute(key, value):
            kept.append(key if isinstance(key, str) and len(key) < 50 else "?")
    for i in range(1000):
        tasktrace.add_custom_attribute(f"many{i}", "y" * 1000)
    return kept

@tasktrace.background_task()
def plain():
    return "plain"

print(plain())
print(work())
print(plain())
tasktrace.flush(10)
sys.exit(5)
"""


def test_hostile_custom_attributes(tmp_path: Path, collector: Collector) -> None:
    """Huge, binary and non-value attributes never break the call; records stay small and
    are delivered, to SQLite and OTLP alike, together with their neighbours."""
    db = tmp_path / "tasks.db"
    prog = write_program(tmp_path, _ATTRIBUTES_PROGRAM)
    env = clean_env(
        tmp_path, TASKTRACE_REPORTER="sqlite,otlp", TASKTRACE_OTLP_ENDPOINT=collector.url
    )
    run = run_python([str(prog)], env)
    assert run.returncode == 5, run.stderr
    assert "Traceback" not in run.stderr and run.stderr == "", run.stderr
    first, kept, last = run.stdout.splitlines()
    # The calls returned normally, and the program saw its own return values.
    assert (first, last) == ("plain", "plain")
    assert kept.startswith("['huge', ") and "object" not in kept, kept
    conn = sqlite3.connect(str(db))
    try:
        (stored_json,) = conn.execute(
            "SELECT attributes FROM transaction_blocks WHERE name = '__main__:work'"
        ).fetchone()
        drops = conn.execute("SELECT COUNT(*) FROM drops").fetchone()[0]
    finally:
        conn.close()
    records = sorted(stored_records(db), key=lambda r: r.start)
    assert [r.name for r in records] == ["__main__:plain", "__main__:work", "__main__:plain"]
    attributes = dict(records[1].attributes)
    assert json.loads(stored_json) == {"0": attributes}
    assert len(stored_json) < 64 * 1024  # 128 attributes of at most 255 characters
    assert len(attributes) <= 128
    assert attributes["huge"] == "x" * 255
    assert all(isinstance(v, (str, int, float, bool)) for v in attributes.values())
    assert drops == 0
    roots = collector.delivered_roots()
    assert sorted(name for _, _, name in roots) == [
        "__main__:plain",
        "__main__:plain",
        "__main__:work",
    ], (collector.parse_errors(), run.stderr)
    assert all(r.spans < 2000 for r in collector.requests)


# -- collectors answering with 100 MB or garbage -----------------------------------------

_RSS_PROGRAM = """
import resource, sys
import tasktrace

@tasktrace.background_task()
def work(i):
    return i

for i in range(int(sys.argv[1])):
    work(i)
    if i % 10 == 9:
        tasktrace.flush(5)  # several exports, each answered as the collector pleases
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_SHORT_TIMEOUT_CONFIG = """
[reporter]
type = "otlp"
timeout = 1.0
"""


def _run_against(tmp_path: Path, collector: Collector, n: int) -> tuple[int, str, float]:
    prog = write_program(tmp_path, _RSS_PROGRAM)
    config = write_program(tmp_path, _SHORT_TIMEOUT_CONFIG, "tasktrace.toml")
    env = clean_env(
        tmp_path,
        TASKTRACE_CONFIG_FILE=str(config),
        TASKTRACE_OTLP_ENDPOINT=collector.url,
        TASKTRACE_SHUTDOWN_TIMEOUT="3",
    )
    run = run_python([str(prog), str(n)], env, launcher=True)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    label, rss = run.stdout.split()
    assert label == "maxrss_kb"
    return int(rss), run.stderr, run.elapsed


@pytest.mark.parametrize(
    "mode", ["huge", "garbage-json", "garbage-gzip", "garbage-ctype", "not-http"]
)
def test_collector_answers_hugely_or_with_garbage(
    tmp_path: Path, collector: Collector, mode: str
) -> None:
    """A 100 MB body or garbage is handled within the export timeout, without memory
    blow-up or traceback; what the collector accepted plus what was said lost = tasks."""
    n = 30
    baseline_rss, _, _ = _run_against(tmp_path, collector, n)
    accepted_before = len(collector.delivered_roots())
    assert accepted_before == n
    collector.mode = mode
    rss, stderr, elapsed = _run_against(tmp_path, collector, n)
    accepted = len(collector.delivered_roots()) - accepted_before
    assert accepted + undelivered(stderr, "otlp") == n, stderr
    if mode == "not-http":
        assert accepted == 0, stderr
    else:
        assert accepted == n, stderr  # a 2xx answer is a delivery, whatever its body
    # One 64 KiB read per response at most: far below the 100 MB on offer.
    assert rss < baseline_rss + 30 * 1024, (rss, baseline_rss)
    assert elapsed < 30, elapsed  # 3 flushes x (2 s export timeout), start-up, exit


# -- secrets ---------------------------------------------------------------------------

_SECRETS = ("SECRET123", "PASSW0RD", "TOK3N")

_SECRETS_PROGRAM = """
import logging, sys
import tasktrace

if sys.argv[1:] == ["app-logging"]:
    logging.basicConfig(level=logging.DEBUG)  # the program logs everything, everywhere
    logging.getLogger("app").info("the program's own log line")

@tasktrace.background_task()
def work(i):
    return i

for batch in range(3):
    work(batch)
    tasktrace.flush(5)
print("ok")
"""


def _secret_env(tmp_path: Path, url: str, **extra: str) -> Dict[str, str]:
    host_port = url.split("://", 1)[1]
    return clean_env(
        tmp_path,
        TASKTRACE_REPORTER="otlp",
        TASKTRACE_OTLP_ENDPOINT=f"http://user:PASSW0RD@{host_port}/?token=TOK3N",
        TASKTRACE_OTLP_HEADERS="api-key=SECRET123,x-other=SECRET123",
        TASKTRACE_LOG_LEVEL="debug",
        **extra,
    )


def _assert_no_secret(*texts: str) -> None:
    basic = base64.b64encode(b"user:PASSW0RD").decode()
    for text in texts:
        for secret in (*_SECRETS, basic):
            assert secret not in text, text


@pytest.mark.parametrize("logging_mode", ["tasktrace-only", "app-logging"])
def test_secrets_never_logged(tmp_path: Path, collector: Collector, logging_mode: str) -> None:
    """Header values, URL passwords and query tokens appear in no log line, even at debug
    level with the collector refusing (400, 500) and the program logging everything."""
    collector.script = [400, 500]
    prog = write_program(tmp_path, _SECRETS_PROGRAM)
    env = _secret_env(tmp_path, collector.url)
    run = run_python([str(prog), logging_mode], env, launcher=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ok\n"
    # Both refusals happened and were logged (once per kind of problem: "HTTP N").
    assert [r.answer for r in collector.requests] == ["400", "500", "200"]
    assert "HTTP 400" in run.stderr, run.stderr
    _assert_no_secret(run.stdout, run.stderr)
    # The secrets were really in use: the collector got the header, token and password.
    request = collector.requests[-1]
    assert request.headers.get("api-key") == "SECRET123"
    assert request.path == "/v1/traces?token=TOK3N", request.path
    assert request.headers.get("Authorization", "").startswith("Basic ")
    # The metric requests carried them too (and are in no log line either).
    assert collector.metric_requests, run.stderr
    metrics = collector.metric_requests[-1]
    assert metrics.headers.get("api-key") == "SECRET123"
    assert metrics.path == "/v1/metrics?token=TOK3N", metrics.path


def test_secrets_never_in_show_config_or_errors(tmp_path: Path, collector: Collector) -> None:
    """show-config and configuration errors redact headers, URL passwords and tokens."""
    env = _secret_env(tmp_path, collector.url)
    shown = subprocess.run(
        [sys.executable, "-m", "tasktrace", "show-config"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "api-key" in shown.stdout and "127.0.0.1" in shown.stdout
    _assert_no_secret(shown.stdout, shown.stderr)
    # Broken values that carry secrets: the error must name the problem, not echo them.
    bad = dict(env)
    bad["TASKTRACE_OTLP_ENDPOINT"] = "ftp://user:PASSW0RD@h/?token=TOK3N"
    bad["TASKTRACE_OTLP_HEADERS"] = "api-key SECRET123"
    for command in (
        ["show-config"],
        ["validate-config"],
        ["run-program", sys.executable, "-c", "print('ran')"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "tasktrace", *command],
            env=bad,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "TASKTRACE_OTLP_ENDPOINT" in result.stdout + result.stderr, (command, result)
        _assert_no_secret(result.stdout, result.stderr)


# -- plain http to a remote host ----------------------------------------------------------

_ONE_TASK = """
import tasktrace

@tasktrace.background_task()
def work():
    return 1

work()
print("ok")
"""

_UNENCRYPTED = "unencrypted"


@pytest.mark.parametrize(
    ("endpoint", "warned"),
    [
        ("http://collector.invalid:4318", True),
        ("http://user:PASSW0RD@collector.invalid:4318/?token=TOK3N", True),
        ("http://127.0.0.1:{port}", False),
        ("http://localhost:{port}", False),
        ("http://[::1]:{port}", False),
        ("https://collector.invalid:4318", False),
    ],
)
def test_plain_http_to_remote_host_warns(
    tmp_path: Path, collector: Collector, endpoint: str, warned: bool
) -> None:
    """http:// to a non-loopback host warns once that data goes unencrypted (URL
    redacted); loopback hosts and https:// do not."""
    prog = write_program(tmp_path, _ONE_TASK)
    env = clean_env(
        tmp_path,
        TASKTRACE_REPORTER="otlp",
        TASKTRACE_OTLP_ENDPOINT=endpoint.format(port=collector.port),
        TASKTRACE_SHUTDOWN_TIMEOUT="1",
    )
    run = run_python([str(prog)], env)
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.count(_UNENCRYPTED) == (1 if warned else 0), run.stderr
    _assert_no_secret(run.stderr)


def test_endpoint_query_is_kept_after_the_traces_path() -> None:
    """/v1/traces goes into the path, before a query string (it used to be appended to the
    query, so the request went to "/" with a mangled token)."""
    assert traces_url("http://h:1/?token=T") == "http://h:1/v1/traces?token=T"
    assert traces_url("http://h:1/otlp?k=v&x=1") == "http://h:1/otlp/v1/traces?k=v&x=1"
    assert traces_url("http://h:1/v1/traces?k=v") == "http://h:1/v1/traces?k=v"
    assert traces_url("http://h:1") == "http://h:1/v1/traces"


def test_unencrypted_warning_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain-http warning is given once per process, with the URL redacted."""
    import logging

    monkeypatch.setattr(otlp, "_plaintext_warned", False)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("tasktrace.otlp")
    log.addHandler(handler)
    try:
        otlp.OtlpReporter(endpoint="http://127.0.0.2:4318")
        otlp.OtlpReporter(endpoint="https://collector.invalid:4318")
        assert records == []
        otlp.OtlpReporter(endpoint="http://u:PASSW0RD@collector.invalid:4318/?token=TOK3N")
        otlp.OtlpReporter(endpoint="http://10.1.2.3:4318")
    finally:
        log.removeHandler(handler)
    assert len(records) == 1
    message = records[0].getMessage()
    assert _UNENCRYPTED in message and "collector.invalid" in message
    _assert_no_secret(message)
