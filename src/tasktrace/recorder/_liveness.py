"""Which tasks are running now, seen from the harvest thread (SPEC section 7).

Nothing here runs on the application's threads. Each harvest the thread asks the scanner
the transaction layer installed (:data:`tasktrace._running.scanner`, see
:func:`tasktrace.transaction.open_background_tasks`) for the open background transactions
of this process.

Tasks open for at least one harvest interval are handed to the reporters that keep running
tasks (the SQLite reporter's ``report_running``); a task past its target's
``max_duration`` gets one warning line. A process with no long task and none reported
before does no store work at all.
"""

from __future__ import annotations

import time
from typing import List, Optional, Set, Tuple

from tasktrace import _fork, _running
from tasktrace._host import hostname, process_start
from tasktrace._logging import get_logger
from tasktrace._sanitize import clean
from tasktrace.config import Settings, TargetSettings
from tasktrace.records import RunningReport, RunningTask, ScheduleEntry

_log = get_logger()


def scheduled_targets(settings: Settings) -> Tuple[ScheduleEntry, ...]:
    """The ``[[background_task]]`` entries of ``settings`` that have a schedule."""
    return tuple(
        _entry(settings, target) for target in settings.background_tasks if target.schedule
    )


def _entry(settings: Settings, target: TargetSettings) -> ScheduleEntry:
    return ScheduleEntry(
        target.application or settings.app_name,
        target.task_name,
        target.schedule or "",
        target.grace,
        target.timezone,
        target.max_duration,
    )


class Liveness:
    """The harvest thread's view of running tasks: what to report, whom to warn about."""

    def __init__(self) -> None:
        self._host = hostname()
        self._pid = _fork.pid
        self._pid_start = process_start(self._pid)
        #: Whether the last report named any task (so an empty one must still be sent,
        #: to take its entries out).
        self._reported = False
        #: Span ids of the tasks already warned about as overdue.
        self._warned: Set[int] = set()
        self._schedules_sent = False

    def reset_after_fork(self) -> None:
        """A forked child starts with nothing reported, warned or recorded."""
        self.__init__()  # type: ignore[misc]

    def report(self, interval: float, *, final: bool = False) -> Optional[RunningReport]:
        """This harvest's :class:`RunningReport`, or None when there is nothing to say.

        Also warns, once per task, about tasks past their ``max_duration``.
        """
        if self._pid != _fork.pid:
            self.reset_after_fork()
        scanner = _running.scanner
        found = scanner() if scanner is not None else []
        limits = _running.MAX_DURATIONS
        tasks: List[RunningTask] = []
        open_ids: Set[int] = set()
        for task in found:
            elapsed = task.elapsed
            limit = limits.get(task.name) if limits else None
            open_ids.add(task.span_id)
            if limit is not None and elapsed > limit and task.span_id not in self._warned:
                self._warned.add(task.span_id)
                _log.warning(
                    "task %s has been running for %s, past its max_duration of %s",
                    clean(task.name)[:200],
                    _seconds(elapsed),
                    _seconds(limit),
                )
            # At exit every open task is reported: the process ends with it unfinished.
            if elapsed >= interval or final:
                tasks.append(
                    RunningTask(
                        task.app,
                        task.name,
                        task.group,
                        task.thread_id,
                        task.trace_id,
                        task.span_id,
                        task.start,
                        limit,
                    )
                )
        self._warned &= open_ids
        if not tasks and not self._reported:
            return None
        self._reported = bool(tasks)
        return RunningReport(
            self._host, self._pid, self._pid_start, time.time(), interval, tuple(tasks)
        )

    def schedules(self, settings: Settings) -> Optional[Tuple[ScheduleEntry, ...]]:
        """The scheduled targets to record, the first time only (None afterwards)."""
        if self._schedules_sent:
            return None
        self._schedules_sent = True
        entries = scheduled_targets(settings)
        return entries or None


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"
