"""Celery: every task a worker runs is a background-task transaction, named ``task.name``
in group ``Celery``, through Celery's public signals only.

Worker side: ``task_prerun`` opens the transaction (on the thread that runs the task, in
every pool: prefork children, threads, solo, eventlet/gevent greenlets) and keeps its scope
on the task's request context; ``task_failure`` and ``task_retry`` record the error of the
attempt; ``task_postrun`` closes it with ``job.outcome`` from Celery's state (``ok``,
``error``, ``retry``, ``rejected``, ``ignored``). A task killed for its hard time limit never
reaches ``task_postrun`` in its child: the pool's supervisor sends ``task_failure`` with
``TimeLimitExceeded`` instead, and the transaction is recorded there (outcome
``timeout``). Soft time limits raise ``SoftTimeLimitExceeded`` in the task: an error.

Producer side: ``before_task_publish`` adds the enqueue time and the W3C trace context to
the message headers (which Celery hands to the task as request attributes) and, inside a
transaction, opens the ``enqueue <task>`` function trace that ``after_task_publish`` ends.

Tested with Celery 5.7 (kombu 5.7, billiard 4.3).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Dict, Optional

from tasktrace._logging import get_logger
from tasktrace.integrations import _context, _jobs

_log = get_logger()

SYSTEM = "Celery"
#: The request attribute holding a running task's scope.
_SCOPE = "_tasktrace_scope"

_STATES = {
    "SUCCESS": _jobs.OK,
    "FAILURE": _jobs.ERROR,
    "RETRY": _jobs.RETRY,
    "REJECTED": _jobs.REJECTED,
    "IGNORED": _jobs.IGNORED,
}

#: Task object -> the config target's override, resolved at the first task run (after
#: the app is finalized, when lazy ``@app.task`` proxies have their task).
_resolved: Optional[Dict[int, _jobs.Override]] = None
_resolved_count = -1


def install(signals: Any) -> None:
    """Connect tasktrace's receivers to ``celery.signals`` (strong references)."""
    for signal, receiver in (
        (signals.task_prerun, _on_prerun),
        (signals.task_postrun, _on_postrun),
        (signals.task_failure, _on_failure),
        (signals.task_retry, _on_retry),
        (signals.task_received, _on_received),
        (signals.before_task_publish, _on_before_publish),
        (signals.after_task_publish, _on_after_publish),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"tasktrace.{receiver.__name__}")


def _override(task: Any) -> Optional[_jobs.Override]:
    global _resolved, _resolved_count
    targets = _jobs.targets("celery")
    if not targets:
        return None
    if _resolved is None or _resolved_count != len(targets):
        resolved: Dict[int, _jobs.Override] = {}
        for value, override in targets:
            try:
                current = value._get_current_object() if hasattr(value, "__evaluated__") else value
            except Exception:  # noqa: BLE001 - a proxy that cannot evaluate names no task
                continue
            resolved[id(current)] = override
        _resolved, _resolved_count = resolved, len(targets)
    return _resolved.get(id(task))


def _headers_of(request: Any, key: str) -> Any:
    value = getattr(request, key, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            value = headers.get(key)
    return value


def _on_prerun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    try:
        task = task if task is not None else sender
        request = task.request
        delivery = getattr(request, "delivery_info", None) or {}
        queue = delivery.get("routing_key") if isinstance(delivery, dict) else None
        context = _context.read_context(
            _headers_of(request, _context.TRACEPARENT), _headers_of(request, _context.TRACESTATE)
        )
        scope = _jobs.start_job(
            SYSTEM,
            str(task.name),
            job_id=task_id,
            queue=queue,
            retries=getattr(request, "retries", None),
            enqueued_at=_context.parse_timestamp(_headers_of(request, _context.ENQUEUED_AT)),
            context=context,
            override=_override(task),
        )
        if scope is not None:
            setattr(request, _SCOPE, scope)
    except Exception:  # noqa: BLE001 - never fail a task (logged)
        _log.debug("tasktrace: celery task_prerun failed", exc_info=True)


def _scope_of(task: Any) -> Any:
    request = getattr(task, "request", None)
    return None if request is None else getattr(request, _SCOPE, None)


def _on_postrun(
    sender: Any = None, task: Any = None, retval: Any = None, state: Any = None, **_: Any
) -> None:
    try:
        task = task if task is not None else sender
        request = task.request
        scope = getattr(request, _SCOPE, None)
        if scope is None:
            return
        setattr(request, _SCOPE, None)
        outcome = _STATES.get(str(state), _jobs.OK if state is None else str(state).lower())
        error = retval if outcome == _jobs.REJECTED and isinstance(retval, BaseException) else None
        _jobs.end_job(scope, outcome, error)
    except Exception:  # noqa: BLE001 - never fail a task (logged)
        _log.debug("tasktrace: celery task_postrun failed", exc_info=True)


def _on_failure(sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any) -> None:
    try:
        scope = _scope_of(sender)
        if scope is not None:
            _jobs.record_error(scope, exception)
            return
        outcome = _LOST.get(type(exception).__name__)
        if outcome is not None:
            _lost(sender, task_id, exception, outcome)
    except Exception:  # noqa: BLE001 - never fail a task (logged)
        _log.debug("tasktrace: celery task_failure failed", exc_info=True)


#: Failures the pool's supervisor reports for a task whose child process is gone: the
#: child never finished its transaction, so the supervisor records the attempt.
_LOST = {"TimeLimitExceeded": _jobs.TIMEOUT, "WorkerLostError": _jobs.ERROR}
#: The supervisor's requests by task id, for their start time (weakly: Celery drops them).
_requests: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()
#: Task ids already recorded as lost (Celery may report one loss twice), newest last.
_recorded_lost: OrderedDict[Any, None] = OrderedDict()
_MAX_LOST = 1024


def _on_received(request: Any = None, **_: Any) -> None:
    try:
        _requests[request.id] = request
    except Exception:  # noqa: BLE001 - only for the start time of a lost task
        pass


def _lost(task: Any, task_id: Any, exception: BaseException, outcome: str) -> None:
    """In the supervisor: the child running ``task_id`` is gone; record the attempt once."""
    if task_id in _recorded_lost:
        return
    _recorded_lost[task_id] = None
    while len(_recorded_lost) > _MAX_LOST:
        _recorded_lost.popitem(last=False)
    request = _requests.get(task_id)
    started = None if request is None else getattr(request, "time_start", None)
    # The supervisor's request knows the message: its queue, headers and retries.
    message: Dict[str, Any] = {}
    delivery: Any = {}
    if request is not None:
        message = getattr(request, "request_dict", None) or {}
        delivery = getattr(request, "delivery_info", None) or {}
    _jobs.record_lost_job(
        SYSTEM,
        str(getattr(task, "name", "?")),
        started if isinstance(started, (int, float)) else None,
        exception,
        outcome,
        job_id=task_id,
        queue=delivery.get("routing_key") if isinstance(delivery, dict) else None,
        retries=message.get("retries") if isinstance(message, dict) else None,
        enqueued_at=_context.parse_timestamp(message.get(_context.ENQUEUED_AT))
        if isinstance(message, dict)
        else None,
        context=_context.read_context(
            message.get(_context.TRACEPARENT), message.get(_context.TRACESTATE)
        )
        if isinstance(message, dict)
        else None,
        override=_override(task),
    )


def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    try:
        scope = _scope_of(sender)
        if scope is None:
            return
        # ``reason`` is Celery's Retry; what made the task retry is its ``exc``, if any.
        cause = getattr(reason, "exc", None)
        error = cause if isinstance(cause, BaseException) else reason
        _jobs.record_error(scope, error)
    except Exception:  # noqa: BLE001 - never fail a task (logged)
        _log.debug("tasktrace: celery task_retry failed", exc_info=True)


def _on_before_publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    if isinstance(headers, dict):
        _jobs.start_enqueue(SYSTEM, str(sender), headers)


def _on_after_publish(**_: Any) -> None:
    _jobs.end_enqueue()
