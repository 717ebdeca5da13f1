"""``tasktrace-admin running`` and ``check`` in-process (SPEC section 7): their tables, JSON,
messages and exit statuses over stores written through the store's own functions."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Tuple

import pytest

from _views_store import record
from tasktrace import store
from tasktrace.admin import main
from tasktrace.records import RunningReport, RunningTask, ScheduleEntry

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\r\u202ename"


def _store(tmp_path: Path) -> Tuple[str, sqlite3.Connection]:
    path = str(tmp_path / "t.db")
    return path, store.connect(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> Tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _lost(conn: sqlite3.Connection, name: str) -> None:
    now = time.time()
    task = RunningTask("billing", name, "Function", 1, 5, 7, now - 120, None)
    store.replace_running(conn, RunningReport("elsewhere", 4242, None, now - 60, 1.0, (task,)))


def test_missing_store_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both commands exit 1 with one line naming the path when there is no store."""
    for command in ("running", "check"):
        status, out, err = _run(capsys, command, "--db", str(tmp_path / "none.db"))
        assert status == 1 and out == ""
        assert err.count("\n") == 1 and "no tasktrace store at" in err


def test_running_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table keeps hostile names as text; JSON has the entry; nothing running says so."""
    path, conn = _store(tmp_path)
    status, out, err = _run(capsys, "running", "--db", path)
    assert (status, out) == (0, "") and "no tasks running" in err
    _lost(conn, HOSTILE)
    status, out, _ = _run(capsys, "running", "--db", path)
    assert status == 0 and "lost" in out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out and "\u202e" not in out
    status, out, _ = _run(capsys, "running", "--db", path, "--format", "json")
    (entry,) = json.loads(out)
    assert entry["name"] == HOSTILE and entry["status"] == "lost"


def _schedule(conn: sqlite3.Connection, name: str, schedule: str = "every 1h") -> None:
    entry = ScheduleEntry("billing", name, schedule, 60.0, None, None)
    store.record_schedules(conn, [entry], time.time() - 30)


def test_check_exit_status_follows_the_worst_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0 while every task is new or ok; 1 once one failed, with a line naming it."""
    path, conn = _store(tmp_path)
    (tmp_path / "tasktrace.toml").write_text("")  # (no config schedules: the store's)
    _schedule(conn, "jobs:a")
    _schedule(conn, "jobs:b")
    ran = record("jobs:a", start=time.time() - 10, duration=1.0)
    store.note_finished(conn, store.newest_runs([ran]), "h", [])
    status, out, err = _run(
        capsys, "check", "--db", path, "--config", str(tmp_path / "tasktrace.toml")
    )
    assert status == 0, err
    assert "app billing, times in UTC" in out and "\nok " in out and "\nnew " in out
    failed = record(
        "jobs:b", start=time.time() - 5, duration=1.0, error=("builtins:ValueError", "x")
    )
    store.note_finished(conn, store.newest_runs([failed]), "h", [])
    status, out, err = _run(
        capsys, "check", "--db", path, "--config", str(tmp_path / "tasktrace.toml")
    )
    assert status == 1 and "check failed: jobs:b (failed)" in err
    status, out, _ = _run(
        capsys,
        "check",
        "--db",
        path,
        "--config",
        str(tmp_path / "tasktrace.toml"),
        "--format",
        "json",
    )
    assert status == 1
    assert {row["name"]: row["status"] for row in json.loads(out)} == {
        "jobs:a": "ok",
        "jobs:b": "failed",
    }
    status, out, _ = _run(
        capsys,
        "check",
        "--db",
        path,
        "--config",
        str(tmp_path / "tasktrace.toml"),
        "--name",
        "jobs:a",
    )
    assert status == 0 and "jobs:b" not in out


def test_check_with_no_schedules_says_how_to_add_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No schedule in the config or the store: exit 0, and a line on what to add."""
    path, _ = _store(tmp_path)
    (tmp_path / "c.toml").write_text("")
    status, out, err = _run(capsys, "check", "--db", path, "--config", str(tmp_path / "c.toml"))
    assert (status, out) == (0, "") and 'add schedule = "..."' in err


def test_check_reads_the_config_s_schedules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schedule only in the config (its program never ran) is checked: new."""
    path, _ = _store(tmp_path)
    (tmp_path / "c.toml").write_text(
        'app_name = "etl"\n[[background_task]]\nfunction = "jobs:load"\nschedule = "@daily"\n'
    )
    status, out, _ = _run(
        capsys, "check", "--db", path, "--config", str(tmp_path / "c.toml"), "--format", "json"
    )
    (row,) = json.loads(out)
    assert status == 0 and (row["app"], row["name"], row["status"], row["source"]) == (
        "etl",
        "jobs:load",
        "new",
        "config",
    )


def test_a_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config that does not load is a usage error naming the problem."""
    path, _ = _store(tmp_path)
    (tmp_path / "c.toml").write_text('[[background_task]]\nfunction = "x:y"\nschedule = "@often"\n')
    status, _, err = _run(capsys, "check", "--db", path, "--config", str(tmp_path / "c.toml"))
    assert status == 2 and "background_task[1].schedule" in err and "@often" in err
