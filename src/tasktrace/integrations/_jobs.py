"""What every integration does around a job: open its transaction (name, group, ``job.*``
attributes, the producer's trace context) and close it with its outcome, and record the
``enqueue <task>`` function trace on the producer's side.

The integrations call these from the job system's own hooks; nothing here knows a job
system. Every function swallows its own failures (logged at debug): a job system's hook
must never fail a job because of tasktrace.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, MutableMapping, NamedTuple, Optional, Tuple

from tasktrace._logging import get_logger
from tasktrace._scopes import _Scope, current_node, open_task_scope, open_trace_scope
from tasktrace._state import STATE
from tasktrace.integrations import _context
from tasktrace.transaction import (
    _INT64_MAX,
    _INT64_MIN,
    MAX_ATTRIBUTE_VALUE_LENGTH,
    MAX_ATTRIBUTES,
    Transaction,
)

_log = get_logger()

#: Outcomes a job attempt ends with (the ``job.outcome`` attribute).
OK, ERROR, RETRY, REJECTED, IGNORED, TIMEOUT = (
    "ok",
    "error",
    "retry",
    "rejected",
    "ignored",
    "timeout",
)

#: Attributes of the span link a job gets with ``propagate = "link"`` (the OTLP reporter
#: turns them into the span's link rather than attributes).
LINK_TRACE_ID = "tasktrace.link.trace_id"
LINK_SPAN_ID = "tasktrace.link.span_id"


class Override(NamedTuple):
    """``name``/``group``/``application`` of a config target naming a task object."""

    name: Optional[str]
    group: Optional[str]
    application: Optional[str]


# The targets naming task objects, per job system: ``(object, override)`` pairs, matched
# to the running task by identity (a task object may be a lazy proxy until its app is
# finalized, so it is resolved at the first job, not when the target is applied).
_lock = threading.Lock()
_targets: Dict[str, List[Tuple[Any, Override]]] = {}


def add_target(system: str, value: Any, override: Override) -> None:
    """Record that the config names task object ``value`` of ``system``."""
    with _lock:
        _targets.setdefault(system, []).append((value, override))


def targets(system: str) -> List[Tuple[Any, Override]]:
    """The ``(object, override)`` pairs of ``system``'s targets."""
    if system not in _targets:  # the common case, once per job: no lock, no copy
        return []
    with _lock:
        return list(_targets.get(system, ()))


def _reset_for_tests() -> None:
    with _lock:
        _targets.clear()


def start_job(
    system: str,
    name: str,
    *,
    job_id: Any = None,
    queue: Any = None,
    retries: Any = None,
    enqueued_at: Optional[float] = None,
    context: Optional[_context.TraceContext] = None,
    override: Optional[Override] = None,
) -> Optional[_Scope]:
    """Open and activate the transaction of one job attempt; None when disabled.

    ``system`` is the group (``"Celery"``, ``"RQ"``, ...); ``override`` the target's
    name/group/application. ``context`` is the producer's trace, applied as
    ``[integrations] propagate`` says.
    """
    try:
        group = system
        app = None
        if override is not None:
            name = override.name or name
            group = override.group or group
            app = override.application
        scope = open_task_scope(app, name, group)
        if scope is None:
            return None
        scope.activate()
        txn = scope.node.txn
        if scope.txn is not None:  # a job of its own, not a segment of an outer task
            _annotate(txn, system, job_id, queue, retries, enqueued_at, context)
            if override is None:
                txn._more().named_by_job = True
        return scope
    except Exception:  # noqa: BLE001 - a job must never fail because of tasktrace (logged)
        _log.debug("tasktrace: could not start the %s job %r", system, name, exc_info=True)
        return None


def _text(value: Any) -> str:
    """``value`` as a plain ``str`` within the attribute length limit."""
    text = value if type(value) is str else str(value)
    if type(text) is not str:  # a str subclass: store the plain value
        text = str.__str__(text)
    return text[:MAX_ATTRIBUTE_VALUE_LENGTH]


def _annotate(
    txn: Transaction,
    system: str,
    job_id: Any,
    queue: Any,
    retries: Any,
    enqueued_at: Optional[float],
    context: Optional[_context.TraceContext],
) -> None:
    # Written straight into the transaction's attributes (a fresh transaction, at most six
    # keys of ours, values made plain here): this runs once per job, and the checks of
    # ``add_custom_attribute`` cost more than the job system's own dispatch.
    rare = txn._more()
    attrs = rare.attributes
    if attrs is None:
        attrs = rare.attributes = {}
    attrs["job.system"] = system
    if job_id is not None:
        attrs["job.id"] = _text(job_id)
    if queue is not None:
        attrs["job.queue"] = _text(queue)
    if isinstance(retries, int) and not isinstance(retries, bool):
        retries = int.__index__(retries)
        if _INT64_MIN <= retries <= _INT64_MAX:
            attrs["job.retries"] = retries
    if enqueued_at is not None:
        # Clocks of producer and worker differ slightly: never a negative wait.
        attrs["job.queue_wait_ms"] = round(max(txn.start - enqueued_at, 0.0) * 1000.0, 3)
    if context is not None:
        mode = STATE.settings.integrations.propagate
        if mode == "parent":
            txn._continue_trace(context.trace_id, context.span_id, context.tracestate)
        elif mode == "link":
            attrs[LINK_TRACE_ID] = f"{context.trace_id:032x}"
            attrs[LINK_SPAN_ID] = f"{context.span_id:016x}"


def end_job(
    scope: Optional[_Scope], outcome: str = OK, error: Optional[BaseException] = None
) -> None:
    """Close a job's scope: ``job.outcome``, ``error`` recorded (if any), delivered."""
    if scope is None:
        return
    try:
        txn = scope.node.txn
        if scope.txn is not None and not txn.finished:
            attrs = txn._more().attributes
            if attrs is None:
                txn._more().attributes = {"job.outcome": _text(outcome)}
            elif "job.outcome" in attrs or len(attrs) < MAX_ATTRIBUTES:
                attrs["job.outcome"] = _text(outcome)
        if error is not None:
            record_error(scope, error)
        scope.deactivate()
        scope.close(None)
    except Exception:  # noqa: BLE001 - never fail the job (logged)
        _log.debug("tasktrace: could not finish a job", exc_info=True)


def record_error(scope: Optional[_Scope], error: Any) -> None:
    """Record ``error`` as an error of the job ``scope`` opened, when it is a transaction
    of its own: a job run inside another task (Celery's eager mode) is a segment of it,
    and the job system did not let the exception reach that task."""
    if scope is not None and scope.txn is not None and isinstance(error, BaseException):
        scope.txn._record_exception(error)


def record_lost_job(
    system: str,
    name: str,
    started: Optional[float],
    error: BaseException,
    outcome: str,
    **job: Any,
) -> None:
    """Record a job attempt that ran in a process now gone (killed for its hard time
    limit): its transaction is built here, from the start time the supervisor knew."""
    try:
        scope = start_job(system, name, **job)
        if scope is None:
            return
        if scope.txn is not None and started is not None and started > 0:
            txn = scope.txn
            elapsed = time.time() - started
            if 0.0 <= elapsed < 86400.0 * 7:
                txn._t0 -= elapsed
        end_job(scope, outcome, error)
    except Exception:  # noqa: BLE001 - never fail the supervisor (logged)
        _log.debug("tasktrace: could not record a lost %s job", system, exc_info=True)


# -- the producer's side ---------------------------------------------------------------

_publishing = threading.local()


def open_enqueue(
    system: str, task_name: str, carrier: MutableMapping[str, Any]
) -> Optional[_Scope]:
    """Put the enqueue time and trace context in ``carrier`` (the message's headers, meta,
    options) and, inside a transaction, open the ``enqueue <task_name>`` function trace
    (not made current), for :func:`close_enqueue`; None outside a transaction."""
    try:
        carrier[_context.ENQUEUED_AT] = time.time()
        node = current_node()
        if node is None:
            return None
        txn = node.txn
        if STATE.settings.integrations.propagate != "none" and not txn.ignored:
            carrier[_context.TRACEPARENT] = _context.format_traceparent(txn.trace_id, txn.span_id)
            state = txn.tracestate
            if state:
                carrier[_context.TRACESTATE] = state
        return open_trace_scope(f"enqueue {task_name}", system)
    except Exception:  # noqa: BLE001 - enqueueing must never fail because of tasktrace (logged)
        _log.debug("tasktrace: could not annotate the enqueueing of %r", task_name, exc_info=True)
        return None


def close_enqueue(scope: Optional[_Scope], error: Optional[BaseException] = None) -> None:
    """End an ``enqueue`` function trace from :func:`open_enqueue`."""
    if scope is not None:
        try:
            scope.close(error)
        except Exception:  # noqa: BLE001 - never fail the producer (logged)
            _log.debug("tasktrace: could not close an enqueue trace", exc_info=True)


def start_enqueue(system: str, task_name: str, carrier: MutableMapping[str, Any]) -> None:
    """:func:`open_enqueue`, for a job system whose end hook (:func:`end_enqueue`) gets no
    handle back: the trace is kept on this thread's stack until then."""
    try:
        scope = open_enqueue(system, task_name, carrier)
        if scope is not None:
            # Not made current: nothing tasktrace traces runs inside a publish, and a
            # publish that raises before its end hook would leave it current otherwise.
            stack: Optional[List[_Scope]] = getattr(_publishing, "stack", None)
            if stack is None:
                stack = _publishing.stack = []
            else:  # forget any left by a publish that failed before its end hook
                stack[:] = [s for s in stack if not s.node.txn.finished]
            stack.append(scope)
    except Exception:  # noqa: BLE001 - enqueueing must never fail because of tasktrace (logged)
        _log.debug("tasktrace: could not annotate the enqueueing of %r", task_name, exc_info=True)


def end_enqueue(error: Optional[BaseException] = None) -> None:
    """Close the innermost ``enqueue`` function trace this thread opened, if any."""
    try:
        stack: Optional[List[_Scope]] = getattr(_publishing, "stack", None)
        if not stack:
            return
        stack.pop().close(error)
    except Exception:  # noqa: BLE001 - never fail the producer (logged)
        _log.debug("tasktrace: could not close an enqueue trace", exc_info=True)


def enqueue(
    system: str, task_name: str, carrier: MutableMapping[str, Any], send: Callable[[], Any]
) -> Any:
    """``send()`` inside the ``enqueue <task_name>`` function trace (systems with one call)."""
    scope = open_enqueue(system, task_name, carrier)
    try:
        result = send()
    except BaseException as exc:
        close_enqueue(scope, exc)
        raise
    close_enqueue(scope)
    return result
