"""A helper that runs commands under ``tasktrace-admin`` in a scratch directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional


class Launcher:
    """Runs commands under ``tasktrace-admin`` in a scratch directory with a JSON-lines sink."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.out = tmp_path / "records.jsonl"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))
        }
        # Keep the program's view predictable: no user site, our interpreter first.
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")
        self.env["TASKTRACE_REPORTER"] = "jsonl"
        self.env["TASKTRACE_DB"] = str(self.out)
        self.env["TASKTRACE_HARVEST_INTERVAL"] = "0.2"

    def write(self, name: str, text: str) -> Path:
        path = self.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def admin(
        self, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(self.env)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "tasktrace", *args],
            cwd=self.cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def records(self) -> List[Dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
