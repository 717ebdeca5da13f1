"""``tasktrace-admin errors``, ``traces`` and ``trace`` on a store written by a real
instrumented program (its own process, the sqlite reporter, exit delivery)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

pytestmark = pytest.mark.integration

_PROGRAM = """
import time
import tasktrace

@tasktrace.function_trace(name="db:query")
def query():
    time.sleep(0.02)

@tasktrace.background_task(name="send_invoices")
def send_invoices(i):
    tasktrace.add_custom_attribute("customer", i)
    query()
    if i % 5 == 4:
        raise ValueError("bad input 2")

for i in range(10):
    try:
        send_invoices(i)
    except ValueError:
        pass
"""


def _admin(args: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import sys; from tasktrace.admin import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env.update(TASKTRACE_DB=str(tmp_path / "v.db"), TASKTRACE_APP_NAME="billing", COLUMNS="80")
    prog = tmp_path / "jobs.py"
    prog.write_text(textwrap.dedent(_PROGRAM))
    subprocess.run([sys.executable, str(prog)], env=env, check=True, timeout=60)
    return env


def test_errors_traces_and_trace_of_a_real_program(env: Dict[str, str]) -> None:
    """The program's two ValueErrors are one group; the slowest errored run is listed;
    its trace shows its attribute, error, traceback and function trace, with this host."""
    proc = _admin(["errors", "--format", "json"], env)
    assert proc.returncode == 0, proc.stderr
    (group,) = json.loads(proc.stdout)
    assert (group["app"], group["name"], group["message"], group["count"]) == (
        "billing",
        "send_invoices",
        "bad input 2",
        2,
    )
    proc = _admin(["traces", "--errors", "--slowest", "--format", "json"], env)
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 and {row["error"] for row in rows} == {"builtins:ValueError"}
    assert group["trace_id"] in {row["trace_id"] for row in rows}
    proc = _admin(["trace", "--format", "json", group["trace_id"][:8]], env)
    assert proc.returncode == 0, proc.stderr
    (txn,) = json.loads(proc.stdout)["transactions"]
    assert txn["attributes"]["customer"] in (4, 9)
    assert txn["error"]["message"] == "bad input 2"
    assert 'raise ValueError("bad input 2")' in txn["error"]["traceback"]
    assert [s["name"] for s in txn["segments"]] == ["db:query"]
    assert txn["host"] == socket.gethostname()
    proc = _admin(["trace", group["trace_id"]], env)
    assert proc.returncode == 0 and "db:query" in proc.stdout
    assert all(len(line) <= 80 for line in proc.stdout.splitlines())
