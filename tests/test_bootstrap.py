"""The bootstrap's start-up cost: what a process started under it imports (in subprocesses).

The bootstrap runs in every Python process a program starts, so it must not import the
heavy modules (STYLE habit 8) until a target module is imported or a transaction is
recorded. These tests pin that down by listing ``sys.modules`` at the end of a program
that imports nothing of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tasktrace.admin.run import build_environment

pytestmark = pytest.mark.integration

#: What the bootstrap must not load for a program that imports none of its targets.
HEAVY = (
    "wrapt",
    "httpx",
    "asyncio",
    "sqlite3",
    "importlib.metadata",
    "logging",
    "pathlib",
    "urllib.parse",
    "dataclasses",
    "inspect",
)

#: The benchmark's config (benchmarks/bench_startup.py): 20 targets never imported.
TWENTY_TARGETS = "\n".join(
    f'[[background_task]]\nfunction = "never_imported_{i}.jobs:run_{i}"\n' for i in range(20)
)

PROGRAM = (
    "import json, sys\n"
    "import tasktrace._state as s\n"
    "print(json.dumps({'modules': sorted(sys.modules), 'initialized': s.STATE.initialized,"
    " 'targets': len(s.STATE.settings.background_tasks)}))\n"
)


def _run_bootstrapped(cwd: Path, config: Optional[str]) -> Dict[str, object]:
    """Run ``PROGRAM`` under the bootstrap in ``cwd``; returns what it printed.

    The probe's own imports (``json``, ``tasktrace._state``) load nothing of ``HEAVY``;
    :func:`test_probe_imports_nothing_heavy` checks that, so what is found here came from
    the bootstrap.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env = build_environment(env, config=config, app_name=None, environment=None)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data: Dict[str, object] = json.loads(result.stdout)
    return data


def _heavy(modules: List[str]) -> List[str]:
    return [name for name in HEAVY if name in modules]


def test_probe_imports_nothing_heavy(tmp_path: Path) -> None:
    """Without the bootstrap, the probe program itself loads none of the heavy modules."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert _heavy(json.loads(result.stdout)["modules"]) == []


def test_twenty_targets_import_nothing_heavy(tmp_path: Path) -> None:
    """With 20 targets the program never imports, the bootstrap loads none of HEAVY."""
    config = tmp_path / "tasktrace.toml"
    config.write_text(TWENTY_TARGETS)
    data = _run_bootstrapped(tmp_path, str(config))
    assert data["initialized"] is True and data["targets"] == 20
    modules = data["modules"]
    assert isinstance(modules, list)
    assert "tasktrace.hooks" in modules  # the targets were installed
    assert _heavy(modules) == []


def test_no_config_file_imports_nothing_heavy(tmp_path: Path) -> None:
    """Without any config file the bootstrap also skips the TOML parser and the hooks."""
    data = _run_bootstrapped(tmp_path, None)
    assert data["initialized"] is True and data["targets"] == 0
    modules = data["modules"]
    assert isinstance(modules, list)
    assert _heavy(modules) == []
    assert "tomllib" not in modules and "tasktrace.hooks" not in modules
