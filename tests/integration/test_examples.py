"""The programs in ``config-examples/`` run under the launcher and `report` shows their tasks.

Each example is copied into the test's directory (so nothing is written into the
repository) and run with its own ``--config``; the SQLite reporter writes to a scratch
store that ``tasktrace-admin report --format json`` then reads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Dict, Tuple

import pytest
from _launcher import Launcher
from _services import EXAMPLES, copy_example

#: example folder -> (its program, its app name, {task name: (group, calls, errors)}).
#: The cron job catches its render errors inside the task, so its tasks have none; the
#: asyncio service's messages 0, 13, 26 and 39 are poison; the worker's parcels
#: 0, 17, ..., 187 weigh nothing and are rejected.
PROGRAMS: Dict[str, Tuple[str, str, Dict[str, Tuple[str, int, int]]]] = {
    "cron": (
        "nightly.py",
        "billing-cron",
        {"invoices:send_invoices": ("Cron", 5, 0), "invoices:cleanup": ("Cron", 1, 0)},
    ),
    "asyncio_service": (
        "service.py",
        "events-service",
        {
            "__main__:handle_message": ("Message", 50, 4),
            "__main__:stream_events": ("Function", 1, 0),
        },
    ),
    "worker": ("run_worker.py", "shipping-worker", {"Process parcel": ("Worker", 200, 12)}),
}


@pytest.mark.parametrize("example", sorted(PROGRAMS))
def test_example_program_is_reported(launcher: Launcher, example: str) -> None:
    """The example's tasks appear in `report` with their group, calls and errors."""
    program, app, expected = PROGRAMS[example]
    copy_example(example, launcher.cwd)
    db = str(launcher.cwd / "examples.db")
    env = {"TASKTRACE_REPORTER": "sqlite", "TASKTRACE_DB": db}
    run = launcher.admin(
        "run-program", "--config", "tasktrace.toml", "python", program, env=env, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # nothing to warn about, and no stray output from tasktrace
    report = launcher.admin("report", "--db", db, "--format", "json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)
    assert {row["app"] for row in rows} == {app}
    found = {row["name"]: (row["group"], row["calls"], row["errors"]) for row in rows}
    assert found == expected
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"] <= row["total_ms"]


#: What validate-config needs importable for each example beyond tasktrace itself.
REQUIRES = {
    "rq_worker": ("rq",),
    "celery_worker": ("celery", "redis"),
    "celery_app": ("celery", "redis"),
    "dramatiq_app": ("dramatiq", "redis"),
    "huey_app": ("huey", "redis"),
    "arq_app": ("arq",),  # in the arq suite's virtualenv (test_arq_integration runs it)
}


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_example_config_validates(example: str) -> None:
    """`validate-config` accepts every example's config, run from the example's folder."""
    for module in REQUIRES.get(example, ()):
        if importlib.util.find_spec(module) is None:
            where = (
                "the extra test-arq, whose suite runs it" if module == "arq" else "the test extra"
            )
            pytest.skip(f"{module} is not installed (it is in {where})")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # import the example's modules without a trace
    result = subprocess.run(
        [sys.executable, "-m", "tasktrace", "validate-config", "tasktrace.toml"],
        cwd=EXAMPLES / example,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 error(s)" in result.stdout, result.stdout
    targets = [line for line in result.stdout.splitlines() if line.startswith(("ok", "error"))]
    assert targets and all(line.startswith("ok ") for line in targets), result.stdout
