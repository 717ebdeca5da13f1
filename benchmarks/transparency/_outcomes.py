"""A pytest plugin that writes one JSON line per test as soon as the test has finished.

``run.py`` loads it into the library's test run (``-p _outcomes`` with this folder on
``PYTHONPATH``), plainly and under the launcher alike. Each line is written and flushed when
the test's teardown ends, so a run that hangs or is killed still leaves the outcome of every
test that finished, and the last line started says where it stopped.

Lines: ``{"event": "start", "nodeid": ...}`` before each test, then ``{"event": "done",
"nodeid", "outcome", "when", "crash", "longrepr"}`` where ``outcome`` is one of ``passed``,
``failed`` (its call failed), ``error`` (its setup or teardown failed), ``skipped``,
``xfailed``, ``xpassed``; collection errors are ``{"event": "done", "outcome": "error",
"when": "collect"}``. The file is named by ``TASKTRACE_HARNESS_OUTCOMES``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, TextIO

_LONGREPR_CHARS = 6000

_out: Optional[TextIO] = None
_pending: Dict[str, Dict[str, Any]] = {}


def _write(record: Dict[str, Any]) -> None:
    if _out is not None:
        _out.write(json.dumps(record) + "\n")
        _out.flush()


def pytest_configure(config: Any) -> None:
    global _out
    path = os.environ.get("TASKTRACE_HARNESS_OUTCOMES")
    if path and _out is None:
        _out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run


def pytest_unconfigure(config: Any) -> None:
    global _out
    if _out is not None:
        _out.close()
        _out = None


def _crash(report: Any) -> Dict[str, Any]:
    """Where and how a failing report failed: crash location, message, text."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    text = str(longrepr) if longrepr is not None else ""
    info: Dict[str, Any] = {"longrepr": text[-_LONGREPR_CHARS:]}
    if crash is not None:
        info["crash"] = f"{crash.path}:{crash.lineno}: {crash.message}"
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:
        info["crash"] = f"{longrepr[0]}:{longrepr[1]}: {longrepr[2]}"
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        info["crash"] = lines[-1] if lines else ""
    return info


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _pending[nodeid] = {"event": "done", "nodeid": nodeid, "outcome": "passed", "when": "call"}
    _write({"event": "start", "nodeid": nodeid})


def pytest_runtest_logreport(report: Any) -> None:
    record = _pending.setdefault(
        report.nodeid,
        {"event": "done", "nodeid": report.nodeid, "outcome": "passed", "when": "call"},
    )
    if record["outcome"] in ("failed", "error"):
        return  # the first failure is the one to show
    wasxfail = hasattr(report, "wasxfail")
    if report.failed:
        record["outcome"] = "failed" if report.when == "call" else "error"
        record["when"] = report.when
        record.update(_crash(report))
    elif report.skipped:
        record["outcome"] = "xfailed" if wasxfail else "skipped"
        record["when"] = report.when
    elif report.when == "call" and wasxfail:
        record["outcome"] = "xpassed"


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    record = _pending.pop(nodeid, None)
    if record is not None:
        _write(record)


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        record = {"event": "done", "nodeid": report.nodeid or "<collection>", "outcome": "error"}
        record["when"] = "collect"
        record.update(_crash(report))
        _write(record)
