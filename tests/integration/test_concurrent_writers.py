"""Many processes writing one SQLite store at once lose nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

_WRITER = """
import sys
import tasktrace

@tasktrace.background_task()
def work(i):
    return i

for i in range(int(sys.argv[1])):
    work(i)
    if i % 50 == 0:
        tasktrace.flush(5.0)  # many small harvests: many concurrent write transactions
"""


def test_sixteen_processes_one_database(tmp_path: Path) -> None:
    """16 processes x 400 tasks, flushing every 50: every task and metric is stored."""
    prog = tmp_path / "writer.py"
    prog.write_text(textwrap.dedent(_WRITER))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env.update(
        TASKTRACE_DB=str(tmp_path / "shared.db"),
        TASKTRACE_HARVEST_INTERVAL="0.05",
        TASKTRACE_SHUTDOWN_TIMEOUT="10",
    )
    procs = [
        subprocess.Popen([sys.executable, str(prog), "400"], env=env, stderr=subprocess.PIPE)
        for _ in range(16)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert b"dropped" not in err, err.decode()
    conn = sqlite3.connect(str(tmp_path / "shared.db"))
    rows = conn.execute(
        "SELECT COALESCE(SUM(count), 0), COUNT(DISTINCT pid) FROM transaction_blocks"
    ).fetchone()
    calls = conn.execute("SELECT SUM(count) FROM metrics").fetchone()[0]
    drops = conn.execute("SELECT COUNT(*) FROM drops").fetchone()[0]
    conn.close()
    assert rows == (16 * 400, 16)
    assert calls == 16 * 400 and drops == 0
