"""RQ: every job a worker performs is a background-task transaction, named
``job.func_name`` in group ``RQ``.

RQ has no signals; its public execution point is ``Job.perform()`` ("what is called by the
worker", in the forking work horse and in ``SimpleWorker`` alike), which this integration
wraps on the class. The producer's side wraps ``Queue.enqueue_job()``, through which
``enqueue``, ``enqueue_call`` and ``Job.create(...)``-then-enqueue all pass, to put the W3C
trace context in the job's ``meta`` before it is saved. ``job.queue_wait_ms`` comes from
RQ's own ``enqueued_at``. A fork-per-job work horse leaves through ``os._exit``, which
tasktrace's fork handling already delivers before (see :mod:`tasktrace.recorder`).

Tested with RQ 3.0.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional

from tasktrace._logging import get_logger
from tasktrace.integrations import _context, _jobs

_log = get_logger()

SYSTEM = "RQ"
_MARK = "__tasktrace_rq__"


def install(queue_module: Any) -> None:
    """Wrap ``rq.job.Job.perform`` and ``rq.queue.Queue.enqueue_job`` (once)."""
    from rq.job import Job

    if not getattr(Job.perform, _MARK, False):
        Job.perform = _wrap_perform(Job.perform)
    queue_class = queue_module.Queue
    if not getattr(queue_class.enqueue_job, _MARK, False):
        queue_class.enqueue_job = _wrap_enqueue_job(queue_class.enqueue_job)


def _job_facts(job: Any) -> Dict[str, Any]:
    enqueued = getattr(job, "enqueued_at", None)
    enqueued_at: Optional[float] = None
    if enqueued is not None and hasattr(enqueued, "timestamp"):
        if getattr(enqueued, "tzinfo", None) is None:  # RQ's naive datetimes are UTC
            import datetime

            enqueued = enqueued.replace(tzinfo=datetime.timezone.utc)
        enqueued_at = float(enqueued.timestamp())
    meta = getattr(job, "meta", None)
    context = None
    if isinstance(meta, dict):
        context = _context.read_context(
            meta.get(_context.TRACEPARENT), meta.get(_context.TRACESTATE)
        )
    return {
        "job_id": getattr(job, "id", None),
        "queue": getattr(job, "origin", None),
        "retries": getattr(job, "number_of_retries", None),
        "enqueued_at": enqueued_at,
        "context": context,
    }


def _wrap_perform(perform: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(perform)
    def perform_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        scope = None
        try:
            scope = _jobs.start_job(SYSTEM, str(self.func_name), **_job_facts(self))
        except Exception:  # noqa: BLE001 - never fail a job (logged)
            _log.debug("tasktrace: could not start an RQ job", exc_info=True)
        try:
            result = perform(self, *args, **kwargs)
        except BaseException as exc:
            outcome = _jobs.ERROR
            if type(exc).__name__ == "JobTimeoutException":
                outcome = _jobs.TIMEOUT
            elif (getattr(self, "retries_left", None) or 0) > 0:
                outcome = _jobs.RETRY  # RQ requeues it: an error of this attempt
            _jobs.end_job(scope, outcome, exc)
            raise
        _jobs.end_job(scope, _jobs.OK)
        return result

    setattr(perform_job, _MARK, True)
    return perform_job


def _wrap_enqueue_job(enqueue_job: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(enqueue_job)
    def enqueue(self: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        carrier: Dict[str, Any] = {}
        try:
            name = str(job.func_name)
        except Exception:  # noqa: BLE001 - a job without a function: still enqueued
            name = "?"
        scope = _jobs.open_enqueue(SYSTEM, name, carrier)
        try:
            carrier.pop(_context.ENQUEUED_AT, None)  # RQ keeps its own enqueued_at
            meta = getattr(job, "meta", None)
            if carrier and isinstance(meta, dict):
                meta.update(carrier)
        except Exception:  # noqa: BLE001 - never fail the producer (logged)
            _log.debug("tasktrace: could not annotate an RQ job", exc_info=True)
        try:
            result = enqueue_job(self, job, *args, **kwargs)
        except BaseException as exc:
            _jobs.close_enqueue(scope, exc)
            raise
        _jobs.close_enqueue(scope)
        return result

    setattr(enqueue, _MARK, True)
    return enqueue
