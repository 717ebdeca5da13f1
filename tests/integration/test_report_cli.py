"""``tasktrace-admin report`` on a store written by a real instrumented program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

pytestmark = pytest.mark.integration

_PROGRAM = """
import tasktrace

@tasktrace.background_task()
def send_invoices(i):
    if i == 3:
        raise ValueError("bad card")

@tasktrace.background_task(name="nightly", group="Task")
def nightly():
    pass

for i in range(10):
    try:
        send_invoices(i)
    except ValueError:
        pass
nightly()
"""


def _admin(args: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import sys; from tasktrace.admin import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env.update(TASKTRACE_DB=str(tmp_path / "r.db"), TASKTRACE_APP_NAME="billing")
    prog = tmp_path / "jobs.py"
    prog.write_text(textwrap.dedent(_PROGRAM))
    subprocess.run([sys.executable, str(prog)], env=env, check=True, timeout=60)
    return env


def test_report_json(env: Dict[str, str]) -> None:
    """--format json prints the contract keys with exact calls and errors."""
    proc = _admin(["report", "--format", "json"], env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == {"__main__:send_invoices", "nightly"}
    invoices = by_name["__main__:send_invoices"]
    assert list(invoices) == [
        "app",
        "name",
        "group",
        "calls",
        "errors",
        "p50_ms",
        "p95_ms",
        "max_ms",
        "total_ms",
    ]
    assert (invoices["app"], invoices["group"], invoices["calls"], invoices["errors"]) == (
        "billing",
        "Function",
        10,
        1,
    )
    assert by_name["nightly"]["group"] == "Task"


def test_report_table_and_filters(env: Dict[str, str], tmp_path: Path) -> None:
    """The table has a header and a row per task; --name and --since filter."""
    proc = _admin(["report", "--db", str(tmp_path / "r.db"), "--since", "1h"], env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["APP", "GROUP", "NAME"]
    assert len(lines) == 3
    proc = _admin(["report", "--name", "night*", "--format", "json"], env)
    assert [row["name"] for row in json.loads(proc.stdout)] == ["nightly"]


def test_report_without_data(tmp_path: Path) -> None:
    """A missing store prints one line on stderr and exits 1; a bad --since exits 2."""
    env = dict(os.environ, TASKTRACE_DB=str(tmp_path / "none.db"))
    proc = _admin(["report"], env)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("no tasktrace data in ")
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    proc = _admin(["report", "--since", "yesterday"], env)
    assert proc.returncode == 2 and "45s, 30m, 2h, 7d" in proc.stderr
