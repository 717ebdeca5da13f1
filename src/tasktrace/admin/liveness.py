"""``tasktrace-admin running`` and ``tasktrace-admin check`` (SPEC section 7).

``running`` lists the tasks open now (and those whose process died under them: *lost*);
``check`` says for each scheduled task whether it ran on time, failed, is running, is past
its ``max_duration``, died mid-task, or was missed, and fails (exit status 1) when one
needs a person, so that it can be a cron job, a Nagios check or a Kubernetes probe:

=====  ==================================================================================
exit   meaning
=====  ==================================================================================
0      every task is ``new``, ``ok``, ``running`` or ``late``
1      a task is ``missed``, ``failed``, ``overdue`` or ``lost``; or the store is missing
       or cannot be read (one line on stderr says so)
2      bad arguments, or a config or schedule that cannot be used (its message says why)
=====  ==================================================================================

``running`` exits 0 when it could read the store (whatever it found), 1 when not.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tasktrace._sanitize import clean

__all__ = [
    "add_check_arguments",
    "add_running_arguments",
    "check_document",
    "configured_schedules",
    "format_check",
    "format_running",
    "run_check",
    "run_running",
]


def _common(parser: argparse.ArgumentParser) -> None:
    from tasktrace.admin.report import add_db_argument, add_format_argument

    add_db_argument(parser)
    parser.add_argument("--app", metavar="NAME", help="only this application")
    parser.add_argument(
        "--name", metavar="GLOB", help="only task names matching GLOB (*, ?, [..]; case-sensitive)"
    )
    add_format_argument(parser)


def add_running_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``running``."""
    _common(parser)
    parser.add_argument(
        "--all",
        action="store_true",
        help="also lost tasks whose task has run again since (kept until retention)",
    )


_CHECK_EPILOG = """\
exit status:
  0  every task is new, ok, running or late
  1  a task is missed, failed, overdue or lost (stderr names it), or the store cannot be read
  2  bad arguments, or a config or schedule that cannot be used
"""


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``check``."""
    parser.epilog = _CHECK_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _common(parser)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the config whose schedules to check (default: TASKTRACE_CONFIG_FILE, "
        "./tasktrace.toml, [tool.tasktrace] in ./pyproject.toml); schedules the programs "
        "recorded in the store are checked too",
    )
    parser.add_argument("--environment", metavar="ENV", help="apply the [env.ENV] table")


# -- tables ----------------------------------------------------------------------------------


def _elapsed(ms: Optional[float]) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000.0
    if seconds < 1:
        return f"{ms:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _when(rfc3339: Optional[str]) -> str:
    return "-" if rfc3339 is None else rfc3339[:19].replace("T", " ")


def _short(rfc3339: Optional[str]) -> str:
    """``2026-12-01T21:54:57.785Z`` as ``12-01 21:54`` (UTC, to the minute)."""
    return "-" if rfc3339 is None else rfc3339[5:16].replace("T", " ")


def _type(error_type: Optional[str]) -> str:
    if error_type is None:
        return "-"
    return error_type[len("builtins:") :] if error_type.startswith("builtins:") else error_type


def format_running(entries: Sequence[Dict[str, Any]], *, width: int) -> str:
    """``running``'s table: status, app, name, host, pid, started (UTC), elapsed."""
    from tasktrace.admin.views import _table

    rows = [
        [
            entry["status"],
            clean(entry["app"]),
            clean(entry["name"]),
            clean(entry["host"]),
            str(entry["pid"]),
            _when(entry["started"]),
            _elapsed(entry["elapsed_ms"])
            + (
                f" / {_elapsed(entry['max_duration_ms'])}"
                if entry.get("max_duration_ms") is not None
                else ""
            ),
        ]
        for entry in entries
    ]
    lines = _table(
        ["STATUS", "APP", "NAME", "HOST", "PID", "STARTED (UTC)", "ELAPSED / LIMIT"],
        rows,
        right=[False, False, False, False, True, False, False],
        shrink=[(2, 12), (1, 8), (3, 8)],
        width=width,
    )
    return "\n".join(lines) + "\n"


def format_check(tasks: Sequence[Dict[str, Any]], *, width: int) -> str:
    """``check``'s table: status, app, name, schedule, last start and duration, last error,
    next due (times in UTC, to the minute). With one app only, its name heads the table
    instead of filling a column."""
    from tasktrace.admin.views import _table

    apps = {task["app"] for task in tasks}
    one_app = len(apps) == 1
    rows = [
        [
            task["status"],
            *([] if one_app else [clean(task["app"])]),
            clean(task["name"]),
            clean(task["schedule"]),
            _short(task["last_start"]),
            _elapsed(task["last_duration_ms"]),
            clean(_type(task["last_error"])),
            _short(task["next_due"]),
        ]
        for task in tasks
    ]
    headings = ["STATUS", "APP", "NAME", "SCHEDULE", "LAST START", "TOOK", "ERROR", "NEXT DUE"]
    right = [False, False, False, False, False, True, False, False]
    shrink = [(6, 8), (3, 9), (1, 8), (2, 12)]
    if one_app:
        del headings[1], right[1]
        shrink = [(index - 1, fewest) for index, fewest in shrink if index != 1]
    lines = _table(headings, rows, right=right, shrink=shrink, width=width)
    title = f"app {clean(next(iter(apps)))}, times in UTC" if one_app else "times in UTC"
    return title + "\n" + "\n".join(lines) + "\n"


# -- commands ----------------------------------------------------------------------------------


def run_running(args: argparse.Namespace) -> int:
    """Run ``running``; returns the exit status (see the module docstring)."""
    from tasktrace import store
    from tasktrace.admin.views import _json, _query, _width

    status, entries, path = _query(
        "running",
        args,
        lambda conn: store.running_entries(
            conn, app=args.app, name_glob=args.name, include_superseded=args.all
        ),
    )
    if status:
        return status
    if args.format == "json":
        _json(entries)
    elif not entries:
        sys.stderr.write(f"no tasks running (nor lost) in {path}\n")
    else:
        sys.stdout.write(format_running(entries, width=_width()))
    return 0


def configured_schedules(path: Optional[str], environment: Optional[str]) -> List[Any]:
    """The scheduled tasks (:class:`tasktrace.store.ScheduledTask`) of the config at
    ``path``, or of the one found as SPEC section 3 says.

    Raises:
        tasktrace.exceptions.ConfigurationError: the config cannot be used.
    """
    from tasktrace import schedules
    from tasktrace.config import load
    from tasktrace.exceptions import ConfigurationError
    from tasktrace.store import ScheduledTask

    overrides: Dict[str, Any] = {}
    if environment:
        overrides["environment"] = environment
    settings = load(path, environment=environment, overrides=overrides)
    problems = []
    for target in settings.background_tasks:
        if target.schedule and target.enabled:
            try:
                schedules.parse(target.schedule, target.grace, target.timezone)
            except schedules.ScheduleError as exc:
                key = "timezone" if "time zone" in str(exc) else "schedule"
                problems.append(f"{target.source}.{key}: {exc}")
    if problems:
        raise ConfigurationError(problems)
    return [
        ScheduledTask(
            target.application or settings.app_name,
            target.task_name,
            target.schedule,
            target.grace,
            target.timezone,
            target.max_duration,
            None,
        )
        for target in settings.background_tasks
        if target.schedule and target.enabled
    ]


def _configured(args: argparse.Namespace) -> Tuple[int, List[Any]]:
    """(status, scheduled tasks of the config found); status 2 once stderr says why.

    Without ``--db`` (nor ``TASKTRACE_DB``), the store is the one ``--config`` names in
    ``[reporter] path``, where its programs write.
    """
    import os

    from tasktrace.config import load
    from tasktrace.exceptions import ConfigurationError

    try:
        tasks = configured_schedules(args.config, args.environment)
        if args.config and not args.db and not os.environ.get("TASKTRACE_DB"):
            args.db = load(args.config, environment=args.environment).reporter.path
        return 0, tasks
    except ConfigurationError as exc:
        for problem in exc.problems or [str(exc)]:
            sys.stderr.write(f"tasktrace-admin check: {clean(problem)}\n")
        return 2, []


def check_document(
    conn: Any,
    configured: Sequence[Any],
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """What ``check --format json`` prints (and ``/api/check`` answers)."""
    from tasktrace import store

    stored = store.stored_schedules(conn) if conn is not None else []
    tasks = store.merge_schedules(configured, stored)
    return store.check_tasks(conn, tasks, app=app, name_glob=name_glob, now=now)


def run_check(args: argparse.Namespace) -> int:
    """Run ``check``; returns the exit status (see the module docstring)."""
    from tasktrace import schedules, store
    from tasktrace.admin.views import _json, _query, _width

    status, configured = _configured(args)
    if status:
        return status
    try:
        status, tasks, path = _query(
            "check",
            args,
            lambda conn: check_document(
                conn, configured, app=args.app, name_glob=args.name, now=time.time()
            ),
        )
    except schedules.ScheduleError as exc:
        sys.stderr.write(f"tasktrace-admin check: {clean(exc)}\n")
        return 2
    if status:
        return status
    failing = [task for task in tasks if task["status"] in store.FAILING]
    if args.format == "json":
        _json(tasks)
    elif not tasks:
        sys.stderr.write(
            f'no scheduled tasks (in the config or in {path}): add schedule = "..." to a '
            "[[background_task]] entry\n"
        )
    else:
        sys.stdout.write(format_check(tasks, width=_width()))
        if failing:
            names = ", ".join(f"{clean(t['name'])} ({t['status']})" for t in failing[:5])
            more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
            sys.stderr.write(f"check failed: {names}{more}\n")
    return 1 if failing else 0
