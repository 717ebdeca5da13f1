"""Liveness in the store (SPEC section 7): running entries and their statuses (running,
overdue, lost by a dead or reused pid or by staleness), last runs, recorded schedules, and
every ``check`` status, on a real SQLite file with the clock given to the reads."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from _views_store import record
from tasktrace import store
from tasktrace._host import hostname, process_start
from tasktrace.records import RunningReport, RunningTask, ScheduleEntry
from tasktrace.store import ScheduledTask

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOST = "worker-1"


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return store.connect(str(tmp_path / "t.db"))


def _task(
    name: str = "jobs:nightly", start: float = NOW - 30, span: int = 7, **kw: Any
) -> RunningTask:
    return RunningTask(
        kw.get("app", "billing"),
        name,
        "Function",
        1,
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span,
        start,
        kw.get("max_duration"),
    )


def _report(
    *tasks: RunningTask,
    now: float = NOW,
    host: str = HOST,
    pid: int = 4242,
    pid_start: Optional[int] = 99,
    interval: float = 5.0,
) -> RunningReport:
    return RunningReport(host, pid, pid_start, now, interval, tuple(tasks))


def _running(conn: sqlite3.Connection, now: float = NOW, **kw: Any) -> List[Dict[str, Any]]:
    return store.running_entries(conn, now=now, host=kw.pop("host", "elsewhere"), **kw)


def test_a_reported_task_is_running_with_the_spec_keys(conn: sqlite3.Connection) -> None:
    """An entry refreshed recently, on another host, is running; JSON has SPEC's keys."""
    store.replace_running(conn, _report(_task()))
    (entry,) = _running(conn, now=NOW + 1)
    assert entry["status"] == "running"
    assert {"app", "name", "group", "pid", "host", "started", "elapsed_ms", "status"} <= set(entry)
    assert entry["elapsed_ms"] == pytest.approx(31_000.0)
    assert entry["started"] == "2027-01-15T07:59:30.000Z"
    assert entry["span_id"] == "0000000000000007"


def test_each_report_replaces_that_process_s_entries(conn: sqlite3.Connection) -> None:
    """A harvest's report is the whole truth for its process: ended tasks leave; other
    processes' entries stay."""
    store.replace_running(conn, _report(_task(span=1), _task("jobs:b", span=2)))
    store.replace_running(conn, _report(_task("jobs:c", span=3), pid=5151))
    store.replace_running(conn, _report(_task(span=1), now=NOW + 5))
    assert sorted((e["name"], e["pid"]) for e in _running(conn, now=NOW + 5)) == [
        ("jobs:c", 5151),
        ("jobs:nightly", 4242),
    ]


def test_past_max_duration_is_overdue(conn: sqlite3.Connection) -> None:
    """Elapsed beyond the target's limit makes the entry overdue."""
    store.replace_running(conn, _report(_task(max_duration=20.0)))
    (entry,) = _running(conn, now=NOW + 1)
    assert entry["status"] == "overdue" and entry["max_duration_ms"] == 20_000.0


def test_an_entry_not_refreshed_for_three_intervals_is_lost(conn: sqlite3.Connection) -> None:
    """From any host: three harvest intervals without a refresh means its process is gone;
    its elapsed time stops at the last sighting."""
    store.replace_running(conn, _report(_task(), interval=5.0))
    assert _running(conn, now=NOW + 14.9)[0]["status"] == "running"
    (entry,) = _running(conn, now=NOW + 15.1)
    assert entry["status"] == "lost"
    assert entry["elapsed_ms"] == pytest.approx(30_000.0)
    assert entry["last_seen"] == "2027-01-15T08:00:00.000Z"


def test_a_dead_pid_on_this_host_is_lost_at_once(conn: sqlite3.Connection) -> None:
    """On the entry's own host a pid with no process means lost, without waiting."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    here = hostname()
    store.replace_running(conn, _report(_task(), host=here, pid=child.pid, pid_start=None))
    (entry,) = store.running_entries(conn, now=NOW + 1, host=here)
    assert entry["status"] == "lost"


def test_a_reused_pid_is_told_apart_by_its_start_time(conn: sqlite3.Connection) -> None:
    """This pid is alive, but started at another time than the entry's process: lost. With
    the right start time it is running."""
    here, me = hostname(), os.getpid()
    mine = process_start(me)
    if mine is None:
        pytest.skip("no /proc on this system: pid reuse is caught by staleness only")
    store.replace_running(conn, _report(_task(), host=here, pid=me, pid_start=mine + 1))
    assert store.running_entries(conn, now=NOW + 1, host=here)[0]["status"] == "lost"
    store.replace_running(conn, _report(_task(span=8), host=here, pid=me, pid_start=mine))
    statuses = sorted(e["status"] for e in store.running_entries(conn, now=NOW + 1, host=here))
    assert statuses == ["lost", "running"]


def test_a_lost_task_stays_until_its_task_runs_again(conn: sqlite3.Connection) -> None:
    """A lost entry is shown until a later run of the task is known; then only with
    include_superseded (it is kept in the store as the record of the crash)."""
    store.replace_running(conn, _report(_task(), interval=1.0))
    assert _running(conn, now=NOW + 60)[0]["status"] == "lost"
    later = record("jobs:nightly", start=NOW + 30, duration=1.0)
    store.note_finished(conn, store.newest_runs([later]), HOST, [])
    assert _running(conn, now=NOW + 60) == []
    (kept,) = _running(conn, now=NOW + 60, include_superseded=True)
    assert kept["status"] == "lost"


def test_filters_by_app_and_name_glob(conn: sqlite3.Connection) -> None:
    """``--app`` and ``--name`` narrow the entries."""
    store.replace_running(conn, _report(_task(span=1), _task("other:x", span=2, app="etl")))
    assert [e["name"] for e in _running(conn, now=NOW, app="etl")] == ["other:x"]
    assert [e["name"] for e in _running(conn, now=NOW, name_glob="jobs:*")] == ["jobs:nightly"]


def test_last_runs_keep_the_newest_and_end_running_entries(conn: sqlite3.Connection) -> None:
    """An older run arriving late never replaces a newer one; a finished span leaves the
    running entries."""
    store.replace_running(conn, _report(_task(span=7)))
    newer = record(
        "jobs:nightly", start=NOW, duration=2.0, span_id=7, error=("builtins:KeyError", "k")
    )
    older = record("jobs:nightly", start=NOW - 100, duration=1.0, span_id=8)
    store.note_finished(conn, store.newest_runs([newer]), HOST, [7])
    store.note_finished(conn, store.newest_runs([older]), HOST, [])
    assert conn.execute("SELECT start, duration, error FROM last_runs").fetchall() == [
        (NOW, 2.0, "builtins:KeyError")
    ]
    assert _running(conn, now=NOW) == []


def test_schedules_keep_their_first_recorded_time(conn: sqlite3.Connection) -> None:
    """Recording a schedule again updates it but keeps when it was first recorded."""
    entry = ScheduleEntry("billing", "jobs:nightly", "@daily", None, None, None)
    store.record_schedules(conn, [entry], NOW)
    store.record_schedules(conn, [entry._replace(schedule="0 3 * * *")], NOW + 100)
    (task,) = store.stored_schedules(conn)
    assert (task.schedule, task.first_recorded) == ("0 3 * * *", NOW)


# -- check -----------------------------------------------------------------------------------


def _check(
    conn: sqlite3.Connection,
    schedule: str = "every 1h",
    now: float = NOW,
    grace: Optional[float] = 60.0,
    first: Optional[float] = NOW - 10,
    max_duration: Optional[float] = None,
) -> Dict[str, Any]:
    task = ScheduledTask("billing", "jobs:nightly", schedule, grace, "UTC", max_duration, first)
    (row,) = store.check_tasks(conn, [(task, "config")], now=now, host="elsewhere")
    return row


def _ran(conn: sqlite3.Connection, start: float, error: bool = False) -> None:
    run = record(
        "jobs:nightly",
        start=start,
        duration=3.0,
        error=("builtins:ValueError", "x") if error else None,
    )
    store.note_finished(conn, store.newest_runs([run]), HOST, [])


def test_check_new_before_the_first_due_time(conn: sqlite3.Connection) -> None:
    """Never ran, and not due yet since the schedule was first recorded: new."""
    row = _check(conn)
    assert row["status"] == "new" and row["last_start"] is None
    assert row["next_due"] == "2027-01-15T08:59:50.000Z"
    assert {
        "app",
        "name",
        "schedule",
        "status",
        "last_start",
        "last_duration_ms",
        "last_error",
        "next_due",
    } <= set(row)


def test_check_ok_late_and_missed_follow_the_due_time_and_grace(conn: sqlite3.Connection) -> None:
    """After a run: ok until due; late within grace; missed after it."""
    _ran(conn, NOW - 1800)
    assert _check(conn)["status"] == "ok"
    assert _check(conn, now=NOW + 1800 + 30)["status"] == "late"
    row = _check(conn, now=NOW + 1800 + 70)
    assert row["status"] == "missed" and row["last_duration_ms"] == 3000.0


def test_check_missed_when_the_program_never_started(conn: sqlite3.Connection) -> None:
    """A schedule first recorded long ago, with no run since: missed."""
    assert _check(conn, first=NOW - 7200)["status"] == "missed"


def test_check_failed_when_the_last_run_raised(conn: sqlite3.Connection) -> None:
    """The last run's error makes it failed, until a run succeeds; missed wins over it."""
    _ran(conn, NOW - 1800, error=True)
    row = _check(conn)
    assert row["status"] == "failed" and row["last_error"] == "builtins:ValueError"
    assert _check(conn, now=NOW + 1800 + 30)["status"] == "failed"
    assert _check(conn, now=NOW + 1800 + 70)["status"] == "missed"


def test_check_running_overdue_and_lost_come_from_the_running_entry(
    conn: sqlite3.Connection,
) -> None:
    """A run in progress decides: running, overdue past max_duration, lost when its
    process is gone; an entry older than the last finished run does not count."""
    _ran(conn, NOW - 3600)
    store.replace_running(conn, _report(_task(start=NOW - 30, max_duration=600.0)))
    assert _check(conn, now=NOW + 1)["status"] == "running"
    assert _check(conn, now=NOW + 4)["next_due"] == "2027-01-15T08:59:30.000Z"
    store.replace_running(conn, _report(_task(start=NOW - 30, max_duration=10.0)))
    assert _check(conn, now=NOW + 1)["status"] == "overdue"
    assert _check(conn, now=NOW + 60)["status"] == "lost"
    _ran(conn, NOW + 100)
    assert _check(conn, now=NOW + 200)["status"] == "ok"


def test_check_of_a_cron_schedule(conn: sqlite3.Connection) -> None:
    """Cron due times: ok after this hour's run; missed when an hour's run never came."""
    _ran(conn, NOW + 5)  # 08:00:05, the 08:00 run
    row = _check(conn, schedule="0 * * * *", now=NOW + 600)
    assert row["status"] == "ok" and row["next_due"] == "2027-01-15T09:00:00.000Z"
    assert _check(conn, schedule="0 * * * *", now=NOW + 3600 + 61)["status"] == "missed"


def test_config_schedules_merge_with_stored_ones() -> None:
    """The config's schedule wins; the store's first_recorded is kept; both sources shown."""
    stored = [
        ScheduledTask("a", "x", "@daily", None, None, None, 5.0),
        ScheduledTask("a", "y", "@hourly", None, None, None, 6.0),
    ]
    configured = [
        ScheduledTask("a", "x", "every 1h", None, None, None, None),
        ScheduledTask("a", "z", "@weekly", None, None, None, None),
    ]
    merged = store.merge_schedules(configured, stored)
    assert [(t.name, t.schedule, t.first_recorded, source) for t, source in merged] == [
        ("x", "every 1h", 5.0, "config+store"),
        ("y", "@hourly", 6.0, "store"),
        ("z", "@weekly", None, "config"),
    ]


def test_retention_removes_lost_tasks_but_keeps_last_runs_and_schedules(
    conn: sqlite3.Connection,
) -> None:
    """prune() deletes running entries last seen before the cutoff; the per-task rows
    check needs (last run, schedule) stay, so a monthly job outlives a 7-day retention."""
    store.replace_running(conn, _report(_task(), now=NOW - 30 * 86400))
    store.replace_running(conn, _report(_task("jobs:fresh", span=9), pid=77, now=NOW))
    _ran(conn, NOW - 30 * 86400)
    store.record_schedules(
        conn,
        [ScheduleEntry("billing", "jobs:nightly", "@monthly", None, None, None)],
        NOW - 40 * 86400,
    )
    store.prune(conn, retention=7 * 86400, max_size=1 << 30, now=NOW)
    assert [e["name"] for e in _running(conn, now=NOW, include_superseded=True)] == ["jobs:fresh"]
    assert conn.execute("SELECT COUNT(*) FROM last_runs").fetchone()[0] == 1
    assert len(store.stored_schedules(conn)) == 1


def test_a_version_4_store_learns_its_last_runs_on_upgrade(tmp_path: Path) -> None:
    """Upgrading to version 5 fills last_runs from the newest stored transaction of each
    task (its error type included), so check knows what ran before the upgrade."""
    from _views_store import write

    path = write(
        str(tmp_path / "v4.db"),
        [
            record("jobs:a", start=NOW - 100, duration=1.0),
            record("jobs:b", start=NOW - 50, duration=2.0),
        ],
        [
            record(
                "jobs:a", start=NOW - 10, duration=4.0, error=("builtins:KeyError", "k"), span_id=9
            )
        ],
    )
    conn = sqlite3.connect(path)
    for table in ("running", "last_runs", "schedules"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE schema_version SET version = 4")
    conn.commit()
    conn.close()
    upgraded = store.connect(path, readonly=True)
    assert upgraded.execute(
        "SELECT name, start, duration, error FROM last_runs ORDER BY name"
    ).fetchall() == [
        ("jobs:a", NOW - 10, 4.0, "builtins:KeyError"),
        ("jobs:b", NOW - 50, 2.0, None),
    ]
