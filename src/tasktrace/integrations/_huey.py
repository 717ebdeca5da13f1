"""Huey: every task a consumer executes is a background-task transaction, named by the
task's name in group ``Huey``, through Huey's public hooks.

Each ``Huey`` instance built after ``huey.api`` is imported gets, from its constructor,
a ``pre_execute`` hook (opens the transaction in the worker thread, process or greenlet
that runs the task), a ``post_execute`` hook (closes it with the task's exception and
``job.outcome`` ``ok``, ``error``, ``retry`` when Huey will run it again, ``timeout``,
``locked``) and signal handlers for the attempts that end without ``post_execute``
(``SIGNAL_CANCELED``, ``SIGNAL_INTERRUPTED``). ``Huey.enqueue`` is timed as the
``enqueue <task>`` function trace.

Not carried: trace context. A Huey message has no field for metadata (its tuple holds
the task's own arguments and retry settings), so a job cannot join its producer's trace
without a storage round trip per task; this integration makes none. Huey tasks run in
immediate mode (``huey.immediate = True``) are recorded the same way.

Tested with Huey 3.5 (thread and process workers, Redis storage).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Dict, Optional

from tasktrace._logging import get_logger
from tasktrace.integrations import _jobs

_log = get_logger()

SYSTEM = "Huey"
_MARK = "__tasktrace_huey__"
_HOOK_NAME = "tasktrace"

_scopes: Dict[int, Any] = {}
_lock = threading.Lock()

_OUTCOMES = {"TaskTimeout": _jobs.TIMEOUT, "TaskLockedException": "locked"}


def install(api: Any) -> None:
    """Wrap ``huey.api.Huey.__init__`` and ``Huey.enqueue`` (once)."""
    huey_class = api.Huey
    if getattr(huey_class.__init__, _MARK, False):
        return
    huey_class.__init__ = _wrap_init(huey_class.__init__, api)
    huey_class.enqueue = _wrap_enqueue(huey_class.enqueue)


def _wrap_init(init: Callable[..., Any], api: Any) -> Callable[..., Any]:
    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        try:
            _connect(self, api)
        except Exception:  # noqa: BLE001 - never break the app's Huey (logged)
            _log.debug("tasktrace: could not instrument a Huey instance", exc_info=True)

    setattr(__init__, _MARK, True)
    return __init__


def _connect(huey: Any, api: Any) -> None:
    from huey import signals

    huey.pre_execute(_HOOK_NAME)(_pre_execute)
    huey.post_execute(_HOOK_NAME)(_post_execute)
    huey.signal(signals.SIGNAL_CANCELED)(_cancelled)
    huey.signal(signals.SIGNAL_INTERRUPTED)(_interrupted)


def _override(task: Any) -> Optional[_jobs.Override]:
    for value, override in _jobs.targets("huey"):
        if getattr(value, "task_class", None) is type(task):
            return override
    return None


def _pre_execute(task: Any) -> None:
    try:
        scope = _jobs.start_job(
            SYSTEM, str(task.name), job_id=getattr(task, "id", None), override=_override(task)
        )
        if scope is not None:
            with _lock:
                _scopes[id(task)] = scope
    except Exception:  # noqa: BLE001 - never fail a task (logged)
        _log.debug("tasktrace: huey pre_execute failed", exc_info=True)


def _end(task: Any, outcome: str, error: Optional[BaseException] = None) -> None:
    with _lock:
        scope = _scopes.pop(id(task), None)
    _jobs.end_job(scope, outcome, error)


def _post_execute(task: Any, task_value: Any, exception: Any) -> None:
    try:
        if exception is None:
            _end(task, _jobs.OK)
            return
        outcome = _OUTCOMES.get(type(exception).__name__)
        if outcome is None:
            outcome = _jobs.RETRY if getattr(task, "retries", 0) else _jobs.ERROR
        _end(task, outcome, exception if isinstance(exception, BaseException) else None)
    except Exception:  # noqa: BLE001 - never fail a task (logged)
        _log.debug("tasktrace: huey post_execute failed", exc_info=True)


def _cancelled(signal: Any, task: Any, *args: Any, **kwargs: Any) -> None:
    _end(task, "cancelled")


def _interrupted(signal: Any, task: Any, *args: Any, **kwargs: Any) -> None:
    _end(task, "interrupted")


def _wrap_enqueue(enqueue: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(enqueue)
    def enqueue_task(self: Any, task: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(task, "name", None)
        if not isinstance(name, str):  # a group or chord: its tasks are enqueued one by one
            return enqueue(self, task, *args, **kwargs)
        return _jobs.enqueue(SYSTEM, name, {}, lambda: enqueue(self, task, *args, **kwargs))

    setattr(enqueue_task, _MARK, True)
    return enqueue_task
