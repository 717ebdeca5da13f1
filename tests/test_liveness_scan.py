"""Finding the running tasks from the harvest thread (SPEC section 7): every form of task is
seen while open (the inlined sync wrapper on another thread's stack, generators between
steps, coroutines while awaiting, ``with`` blocks), ignored and finished ones are not, and
the harvest thread's report (a task older than a harvest interval; overdue warned once)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator, List

import pytest

import tasktrace
from tasktrace import _running
from tasktrace.recorder._liveness import Liveness
from tasktrace.transaction import OPEN, open_background_tasks


def _names() -> List[str]:
    return sorted(task.name for task in open_background_tasks())


@tasktrace.background_task(name="sync-task")
def _sync_task(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(10)


def test_a_sync_task_on_another_thread_is_found_on_its_stack() -> None:
    """The inlined wrapper's transaction is read from the thread's frame: found while it
    runs (with its thread and start), gone once it returns."""
    started, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=_sync_task, args=(started, release))
    worker.start()
    try:
        assert started.wait(10)
        (task,) = open_background_tasks()
        assert (task.name, task.thread_id) == ("sync-task", worker.ident)
        assert task.elapsed >= 0 and task.start > 0
    finally:
        release.set()
        worker.join(10)
    assert open_background_tasks() == []


@tasktrace.background_task(name="gen-task")
def _gen_task() -> Iterator[int]:
    yield 1
    yield 2


def test_a_generator_is_open_between_its_steps() -> None:
    """From its first step to its end a generator task is open, even while suspended."""
    gen = _gen_task()
    assert _names() == []  # created, never started: nothing is open
    next(gen)
    assert _names() == ["gen-task"]
    assert list(gen) == [2]
    assert _names() == []


@tasktrace.background_task(name="async-task")
async def _async_task(event: asyncio.Event) -> None:
    await event.wait()


def test_a_coroutine_is_open_while_it_awaits() -> None:
    """An asyncio task is open from its first step, suspended or not, until it ends."""

    async def main() -> List[str]:
        event = asyncio.Event()
        running = asyncio.ensure_future(_async_task(event))
        await asyncio.sleep(0.01)
        seen = _names()
        event.set()
        await running
        return seen

    assert asyncio.run(main()) == ["async-task"]
    assert _names() == []


def test_with_blocks_ignored_and_web_transactions() -> None:
    """A ``with`` block task is open inside the block; an ignored task, a web transaction
    and a finished one are not reported."""
    with tasktrace.BackgroundTask(name="block-task"):
        assert _names() == ["block-task"]
        tasktrace.ignore_transaction()
        assert _names() == []
    with tasktrace.WebTransaction(name="GET /"):
        assert _names() == []
    assert _names() == [] and not OPEN


@tasktrace.background_task(name="nested-outer")
def _outer() -> List[str]:
    return _inner()


@tasktrace.background_task(name="nested-inner")
def _inner() -> List[str]:
    return _names()


def test_a_nested_task_is_part_of_its_outer_one() -> None:
    """A task inside a task is a segment of it: one running task, the outer."""
    assert _outer() == ["nested-outer"]


class _Warnings:
    """Stands in for the liveness module's logger: keeps each warning's text (whatever
    another test did to logging's configuration)."""

    def __init__(self) -> None:
        self.messages: List[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.messages.append(message % args)


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Warnings]:
    """The liveness module's warnings, with the test's tasks recorded in memory: the
    default recorder would start a harvest thread, whose own report could warn about the
    same overdue task while the test looks (the test's report is the only one wanted)."""
    from tasktrace.recorder import _liveness
    from tasktrace.testing import capture_transactions

    log = _Warnings()
    monkeypatch.setattr(_liveness, "_log", log)
    with capture_transactions():
        yield log


def test_the_report_holds_tasks_older_than_an_interval_and_warns_once(warnings: _Warnings) -> None:
    """Only tasks open for an interval are reported (all of them at exit); past its
    max_duration a task is warned about once, however many harvests see it; a report is
    still sent once the last task has ended, then no more."""
    _running.MAX_DURATIONS["block-task"] = 0.0
    liveness = Liveness()
    with tasktrace.BackgroundTask(name="block-task"):
        assert liveness.report(3600.0) is None  # warned, but too young to report
        final = liveness.report(3600.0, final=True)
        assert final is not None and [t.name for t in final.tasks] == ["block-task"]
        assert final.tasks[0].max_duration == 0.0
        again = liveness.report(0.0)
        assert again is not None and [t.name for t in again.tasks] == ["block-task"]
    assert len(warnings.messages) == 1
    assert warnings.messages[0].startswith("task block-task has been running for")
    emptied = liveness.report(0.0)
    assert emptied is not None and emptied.tasks == ()
    assert liveness.report(0.0) is None


def test_a_hostile_name_is_warned_about_as_text(warnings: _Warnings) -> None:
    """The overdue warning shows a task name's control characters as escapes."""
    _running.MAX_DURATIONS["evil\x1b[2J\rname"] = 0.0
    with tasktrace.BackgroundTask(name="evil\x1b[2J\rname"):
        Liveness().report(0.0)
    (message,) = warnings.messages
    assert "\x1b" not in message and "\r" not in message and "\\x1b" in message


def test_schedules_are_given_once(monkeypatch: Any) -> None:
    """The scheduled targets are handed to the reporters on the first harvest only."""
    from tasktrace.config import Settings, TargetSettings

    target = TargetSettings("background_task", "jobs:nightly", schedule="@daily")
    settings = Settings(app_name="billing", background_tasks=(target,))
    liveness = Liveness()
    (entry,) = liveness.schedules(settings) or ()
    assert (entry.app, entry.name, entry.schedule) == ("billing", "jobs:nightly", "@daily")
    assert liveness.schedules(settings) is None
