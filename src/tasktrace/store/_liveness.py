"""Liveness in the store (SPEC section 7): running entries, last runs, schedules; and the
reads of ``tasktrace-admin running`` and ``check``.

Writes come from the sqlite reporter on the harvest thread, each in a short ``BEGIN
IMMEDIATE`` transaction of its own: :func:`replace_running` (this process's open tasks,
every harvest that has any or had some), :func:`note_finished` (the newest finished run
per task, and the running entries of tasks that have since finished) and
:func:`record_schedules` (once per process).

Statuses are decided when read, from the entries and the clock, never stored: an entry
is *lost* when its process is gone -- on this host its pid is dead, or belongs to a
process started later (a reused pid) -- or when it has not been refreshed for three of its
harvest intervals (from any host); it is *overdue* past its ``max_duration``.
"""

from __future__ import annotations

import fnmatch
import os
import sqlite3
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from tasktrace._host import hostname, process_start
from tasktrace.records import RunningReport, ScheduleEntry, TransactionRecord
from tasktrace.store._views import rfc3339

#: An entry not refreshed for this many of its harvest intervals is lost.
STALE_INTERVALS = 3


def _signed(span_id: int) -> int:
    """A 64-bit span id as the signed integer SQLite stores."""
    return span_id - (1 << 64) if span_id >= (1 << 63) else span_id


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _immediate(conn: sqlite3.Connection, work: Callable[[], None]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        work()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def replace_running(conn: sqlite3.Connection, report: RunningReport) -> None:
    """Make the store's running entries of this process those of ``report``."""

    def work() -> None:
        conn.execute(
            "DELETE FROM running WHERE host = ? AND pid = ? AND pid_start IS ?",
            (report.host, report.pid, report.pid_start),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO running (host, pid, pid_start, span_id, app, name, grp, "
            "thread, trace_id, started, last_seen, interval, max_duration) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    report.host,
                    report.pid,
                    report.pid_start,
                    _signed(task.span_id),
                    task.app,
                    task.name,
                    task.group,
                    task.thread_id & 0x7FFFFFFFFFFFFFFF,
                    task.trace_id.to_bytes(16, "big"),
                    task.start,
                    report.now,
                    report.interval,
                    task.max_duration,
                )
                for task in report.tasks
            ],
        )

    _immediate(conn, work)


def newest_runs(records: Iterable[TransactionRecord]) -> Dict[Tuple[str, str], TransactionRecord]:
    """The latest-starting finished background transaction per (app, name)."""
    newest: Dict[Tuple[str, str], TransactionRecord] = {}
    for record in records:
        if not record.background:
            continue
        key = (record.app, record.name)
        seen = newest.get(key)
        if seen is None or record.start >= seen.start:
            newest[key] = record
    return newest


def note_finished(
    conn: sqlite3.Connection,
    runs: Mapping[Tuple[str, str], TransactionRecord],
    host: str,
    finished_spans: Sequence[int],
) -> None:
    """Keep the newest run per task (a later one never replaced by an earlier), and take
    out this host's running entries of ``finished_spans``."""

    def work() -> None:
        conn.executemany(
            "INSERT INTO last_runs (app, name, grp, start, duration, error, host, pid, "
            "trace_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (app, name) DO UPDATE SET grp = excluded.grp, "
            "start = excluded.start, duration = excluded.duration, error = excluded.error, "
            "host = excluded.host, pid = excluded.pid, trace_id = excluded.trace_id "
            "WHERE excluded.start >= last_runs.start",
            [
                (
                    app,
                    name,
                    record.group,
                    record.start,
                    record.duration,
                    record.errors[-1].type if record.errors else None,
                    host,
                    record.pid,
                    record.trace_id.to_bytes(16, "big"),
                )
                for (app, name), record in runs.items()
            ],
        )
        if finished_spans:
            conn.executemany(
                "DELETE FROM running WHERE host = ? AND span_id = ?",
                [(host, _signed(span)) for span in finished_spans],
            )

    _immediate(conn, work)


def record_schedules(
    conn: sqlite3.Connection, entries: Sequence[ScheduleEntry], now: float
) -> None:
    """Record (or update) scheduled targets; ``first_recorded`` stays the first time's."""

    def work() -> None:
        conn.executemany(
            "INSERT INTO schedules (app, name, schedule, grace, timezone, max_duration, "
            "first_recorded, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (app, name) DO UPDATE SET schedule = excluded.schedule, "
            "grace = excluded.grace, timezone = excluded.timezone, "
            "max_duration = excluded.max_duration, updated = excluded.updated",
            [
                (e.app, e.name, e.schedule, e.grace, e.timezone, e.max_duration, now, now)
                for e in entries
            ],
        )

    _immediate(conn, work)


# -- reads ---------------------------------------------------------------------------------


def _process_gone(host: str, pid: int, pid_start: Optional[int], here: str) -> bool:
    """Whether the process of an entry written on ``host`` is known to be gone."""
    if host != here:
        return False
    started = process_start(pid)
    if started is not None:
        return pid_start is not None and started != pid_start
    if os.path.isdir("/proc/self"):
        return True  # no /proc entry (or a zombie's): no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: it exists, someone else's
        return False
    return False


def _matches(name: str, glob: Optional[str]) -> bool:
    return glob is None or fnmatch.fnmatchcase(name, glob)


def running_entries(
    conn: sqlite3.Connection,
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    include_superseded: bool = False,
    now: Optional[float] = None,
    host: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """The running entries, oldest start first, with ``status`` running, overdue or lost.

    A lost entry whose task has started again since (a later run finished or is
    running) is left out unless ``include_superseded``: it stays in the store, as the
    record of that crash, until retention removes it.
    """
    return [entry for _, entry in _running(conn, app, name_glob, include_superseded, now, host)]


def _running(
    conn: sqlite3.Connection,
    app: Optional[str],
    name_glob: Optional[str],
    include_superseded: bool,
    now: Optional[float],
    host: Optional[str],
) -> List[Tuple[float, Dict[str, Any]]]:
    """:func:`running_entries`, each with its start in epoch seconds."""
    now = time.time() if now is None else now
    here = hostname() if host is None else host
    clauses, params = [], []
    if app is not None:
        clauses.append("app = ?")
        params.append(app)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    try:
        rows = conn.execute(
            "SELECT host, pid, pid_start, span_id, app, name, grp, thread, trace_id, started, "
            f"last_seen, interval, max_duration FROM running{where} ORDER BY started, span_id",
            params,
        ).fetchall()
        latest = {(a, n): s for a, n, s in conn.execute("SELECT app, name, start FROM last_runs")}
    except sqlite3.OperationalError as exc:  # a store from before version 5, read-only
        if "no such table" in str(exc):
            return []
        raise
    newest_start: Dict[Tuple[str, str], float] = {}
    for row in rows:
        key = (row[4], row[5])
        newest_start[key] = max(newest_start.get(key, row[9]), row[9])
    found: List[Tuple[float, Dict[str, Any]]] = []
    gone_cache: Dict[Tuple[str, int, Optional[int]], bool] = {}
    for (
        row_host,
        pid,
        pid_start,
        span,
        row_app,
        name,
        grp,
        thread,
        trace_id,
        started,
        last_seen,
        interval,
        max_duration,
    ) in rows:
        if not _matches(name, name_glob):
            continue
        process = (row_host, pid, pid_start)
        if process not in gone_cache:
            gone_cache[process] = _process_gone(row_host, pid, pid_start, here)
        stale = now - last_seen > STALE_INTERVALS * max(interval, 0.001)
        lost = gone_cache[process] or stale
        elapsed = (last_seen if lost else now) - started
        if lost:
            status = "lost"
            key = (row_app, name)
            later = max(latest.get(key, float("-inf")), newest_start.get(key, float("-inf")))
            if later > started and not include_superseded:
                continue
        elif max_duration is not None and elapsed > max_duration:
            status = "overdue"
        else:
            status = "running"
        found.append(
            (
                started,
                {
                    "app": row_app,
                    "name": name,
                    "group": grp,
                    "pid": pid,
                    "host": row_host,
                    "thread": thread,
                    "started": rfc3339(started),
                    "last_seen": rfc3339(last_seen),
                    "elapsed_ms": round(max(0.0, elapsed) * 1000.0, 3),
                    "max_duration_ms": None if max_duration is None else max_duration * 1000.0,
                    "status": status,
                    "trace_id": bytes(trace_id).hex(),
                    "span_id": f"{_unsigned(span):016x}",
                },
            )
        )
    return found


class ScheduledTask:
    """A schedule ``check`` looks at: from the config, the store, or both."""

    __slots__ = ("app", "first_recorded", "grace", "max_duration", "name", "schedule", "timezone")

    def __init__(
        self,
        app: str,
        name: str,
        schedule: str,
        grace: Optional[float],
        timezone: Optional[str],
        max_duration: Optional[float],
        first_recorded: Optional[float],
    ) -> None:
        self.app = app
        self.name = name
        self.schedule = schedule
        self.grace = grace
        self.timezone = timezone
        self.max_duration = max_duration
        self.first_recorded = first_recorded


def stored_schedules(conn: sqlite3.Connection) -> List[ScheduledTask]:
    """The schedules the programs recorded."""
    try:
        rows = conn.execute(
            "SELECT app, name, schedule, grace, timezone, max_duration, first_recorded "
            "FROM schedules ORDER BY app, name"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    return [ScheduledTask(*row) for row in rows]


def last_run(conn: sqlite3.Connection, app: str, name: str) -> Optional[Tuple[Any, ...]]:
    """(start, duration, error type or None) of the newest finished run, if any."""
    try:
        row = conn.execute(
            "SELECT start, duration, error FROM last_runs WHERE app = ? AND name = ?",
            (app, name),
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else tuple(row)


#: ``check`` statuses that fail it (exit status 1); the others pass.
FAILING = frozenset({"missed", "failed", "overdue", "lost"})


def merge_schedules(
    configured: Sequence[ScheduledTask], stored: Sequence[ScheduledTask]
) -> List[Tuple[ScheduledTask, str]]:
    """One task per (app, name) with where it came from (``config``, ``store`` or
    ``config+store``): the config's schedule wins, the store's ``first_recorded`` is kept."""
    merged: Dict[Tuple[str, str], Tuple[ScheduledTask, str]] = {}
    for task in stored:
        merged[(task.app, task.name)] = (task, "store")
    for task in configured:
        key = (task.app, task.name)
        seen = merged.get(key)
        if seen is not None:
            task.first_recorded = seen[0].first_recorded
            merged[key] = (task, "config+store")
        else:
            merged[key] = (task, "config")
    return [merged[key] for key in sorted(merged)]


def check_tasks(
    conn: Optional[sqlite3.Connection],
    tasks: Sequence[Tuple[ScheduledTask, str]],
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    now: Optional[float] = None,
    host: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """The status of each scheduled task (SPEC section 7), as ``check`` prints it.

    Raises:
        tasktrace.schedules.ScheduleError: a schedule that does not parse (the message
            names it); the caller says which task it belongs to.
    """
    from tasktrace import schedules

    now = time.time() if now is None else now
    current: Dict[Tuple[str, str], Tuple[float, Dict[str, Any]]] = {}
    if conn is not None:
        for started, seen in _running(conn, app, None, False, now, host):
            # The newest entry of each task speaks for it.
            current[(seen["app"], seen["name"])] = (started, seen)
    found: List[Dict[str, Any]] = []
    for task, source in tasks:
        if (app is not None and task.app != app) or not _matches(task.name, name_glob):
            continue
        try:
            schedule = schedules.parse(task.schedule, task.grace, task.timezone)
        except schedules.ScheduleError as exc:
            raise schedules.ScheduleError(f"{task.app} / {task.name}: schedule {exc}") from None
        last = last_run(conn, task.app, task.name) if conn is not None else None
        last_start = last[0] if last else None
        started, entry = current.get((task.app, task.name), (0.0, None))
        if entry is not None and last_start is not None and started < last_start:
            entry = None  # an older run's entry: the newer run finished
        if entry is not None:
            status = entry["status"]
            next_due = schedule.next_after(started)
        else:
            if last is not None:
                # ``every``: due a period after the last run ended (a loop that sleeps
                # between runs); cron: the first fire time after the last start.
                reference = last[0] + last[1] if schedule.period is not None else last[0]
            else:
                reference = task.first_recorded if task.first_recorded is not None else now
            next_due = schedule.next_after(reference)
            failed = last is not None and last[2] is not None
            if now < next_due:
                status = "failed" if failed else ("ok" if last else "new")
            elif now < next_due + schedule.grace:
                status = "failed" if failed else "late"
            else:
                status = "missed"
        found.append(
            {
                "app": task.app,
                "name": task.name,
                "schedule": task.schedule,
                "status": status,
                "last_start": None if last is None else rfc3339(last[0]),
                "last_duration_ms": None if last is None else round(last[1] * 1000.0, 3),
                "last_error": None if last is None else last[2],
                "next_due": rfc3339(next_due),
                "grace_ms": schedule.grace * 1000.0,
                "timezone": task.timezone,
                "source": source,
                "running": entry,
            }
        )
    return found
