"""Dramatiq: every message a worker processes is a background-task transaction, named by
its actor in group ``Dramatiq``, through Dramatiq's middleware API.

When ``dramatiq.broker`` is imported, ``Broker.__init__`` is wrapped so that every broker
(its own middleware list or the default one) ends its construction with
``broker.add_middleware(...)`` of tasktrace's ``Middleware`` subclass, last in the list.
Its hooks:

* ``before_process_message`` opens the job's transaction in the worker thread (threads of
  every worker process), ``after_process_message`` closes it with the actor's exception,
  if any, and ``job.outcome`` ``ok``, ``error``, ``retry`` (the Retries middleware will
  requeue the message: an error of this attempt) or ``timeout`` (``TimeLimitExceeded``);
  ``after_skip_message`` closes a skipped one (``skipped``);
* ``before_enqueue``/``after_enqueue`` put the W3C trace context in the message's
  ``options`` and time the ``enqueue <actor>`` function trace.

``job.queue_wait_ms`` comes from the message's own ``message_timestamp``. Tested with
Dramatiq 2.2 (Redis and RabbitMQ brokers, worker processes and threads).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Dict, Optional

from tasktrace._logging import get_logger
from tasktrace.integrations import _context, _jobs

_log = get_logger()

SYSTEM = "Dramatiq"

#: Scopes of the messages being processed, by message id (one per worker thread at a time).
_scopes: Dict[Any, Any] = {}
_lock = threading.Lock()


_MARK = "__tasktrace_dramatiq__"


def install(broker_module: Any) -> None:
    """Make every broker built from now on add tasktrace's middleware (once)."""
    from dramatiq.middleware import Middleware

    broker_class = broker_module.Broker
    if getattr(broker_class.__init__, _MARK, False):
        return
    middleware_class = _middleware_class(Middleware)
    init = broker_class.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        try:
            if not any(getattr(m, "_tasktrace", False) for m in self.middleware):
                self.add_middleware(middleware_class())
        except Exception:  # noqa: BLE001 - never break the program's broker (logged)
            _log.debug("tasktrace: could not add the Dramatiq middleware", exc_info=True)

    setattr(__init__, _MARK, True)
    broker_class.__init__ = __init__


def _queue_of(message: Any) -> Optional[str]:
    name = getattr(message, "queue_name", None)
    if not isinstance(name, str):
        return None
    for suffix in (".DQ", ".XQ"):  # Dramatiq's delay and dead-letter queues
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _override(broker: Any, message: Any) -> Optional[_jobs.Override]:
    targets = _jobs.targets("dramatiq")
    if not targets:
        return None
    try:
        actor = broker.get_actor(message.actor_name)
    except Exception:  # noqa: BLE001 - an unknown actor has no target
        return None
    for value, override in targets:
        if value is actor:
            return override
    return None


def _will_retry(broker: Any, message: Any, exception: BaseException) -> bool:
    """Whether the Retries middleware will requeue ``message`` (as its own test reads)."""
    retries_middleware = None
    for middleware in getattr(broker, "middleware", ()):
        if type(middleware).__name__ == "Retries":
            retries_middleware = middleware
    if retries_middleware is None:
        return False
    actor = broker.get_actor(message.actor_name)
    options = message.options
    throws = options.get("throws") or actor.options.get("throws")
    if throws and isinstance(exception, throws):
        return False
    retries = options.get("retries", 0)
    max_retries = options.get(
        "max_retries", actor.options.get("max_retries", retries_middleware.max_retries)
    )
    retry_when = actor.options.get("retry_when", retries_middleware.retry_when)
    if retry_when is not None:
        return bool(retry_when(retries, exception))
    return max_retries is None or retries < max_retries


def _middleware_class(base: Any) -> Any:
    class TaskTraceMiddleware(base):  # type: ignore[misc]
        """Records every processed message as a transaction (tasktrace's Dramatiq integration)."""

        _tasktrace = True

        def before_process_message(self, broker: Any, message: Any) -> None:
            try:
                options = message.options
                timestamp = getattr(message, "message_timestamp", None)
                scope = _jobs.start_job(
                    SYSTEM,
                    str(message.actor_name),
                    job_id=message.message_id,
                    queue=_queue_of(message),
                    retries=options.get("retries", 0),
                    enqueued_at=None
                    if timestamp is None
                    else _context.parse_timestamp(timestamp / 1000.0),
                    context=_context.read_context(
                        options.get(_context.TRACEPARENT), options.get(_context.TRACESTATE)
                    ),
                    override=_override(broker, message),
                )
                if scope is not None:
                    with _lock:
                        _scopes[message.message_id] = scope
            except Exception:  # noqa: BLE001 - never fail a message (logged)
                _log.debug("tasktrace: dramatiq before_process_message failed", exc_info=True)

        def after_process_message(
            self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
        ) -> None:
            try:
                with _lock:
                    scope = _scopes.pop(message.message_id, None)
                if scope is None:
                    return
                outcome = _jobs.OK
                if exception is not None:
                    if type(exception).__name__ == "TimeLimitExceeded":
                        outcome = _jobs.TIMEOUT
                    elif _will_retry(broker, message, exception):
                        outcome = _jobs.RETRY
                    else:
                        outcome = _jobs.ERROR
                _jobs.end_job(scope, outcome, exception)
            except Exception:  # noqa: BLE001 - never fail a message (logged)
                _log.debug("tasktrace: dramatiq after_process_message failed", exc_info=True)

        def after_skip_message(self, broker: Any, message: Any) -> None:
            with _lock:
                scope = _scopes.pop(message.message_id, None)
            _jobs.end_job(scope, "skipped")

        def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            carrier: Dict[str, Any] = {}
            _jobs.start_enqueue(SYSTEM, str(message.actor_name), carrier)
            carrier.pop(_context.ENQUEUED_AT, None)  # the message has its own timestamp
            try:
                message.options.update(carrier)
            except Exception:  # noqa: BLE001 - never fail the producer (logged)
                _log.debug("tasktrace: could not annotate a Dramatiq message", exc_info=True)

        def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            _jobs.end_enqueue()

    return TaskTraceMiddleware
