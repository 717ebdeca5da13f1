"""arq: every job an arq worker runs is a background-task transaction, named by the job
function's name in group ``arq``.

arq calls each job as ``function.coroutine(ctx, ...)`` in an asyncio task of its own, with
the job's id, try and enqueue time in ``ctx``. When ``arq.worker`` is imported,
``Worker.__init__`` is wrapped so that, once the worker has built its table of
``Function``/``CronJob`` entries, each entry's ``coroutine`` is wrapped (a copy of the
entry, ``dataclasses.replace``): the job's transaction opens inside the job's own asyncio
task, with ``job.id``, ``job.queue`` (the worker's queue), ``job.retries`` (``job_try``
minus one) and ``job.queue_wait_ms`` from ``enqueue_time``, and ends with ``job.outcome``
as arq will treat the attempt:

* ``ok``; ``error`` for an exception;
* ``retry`` for ``arq.worker.Retry`` (or ``RetryJob``) while arq will run the job again:
  the worker's ``retry_jobs`` is on and the job has tries left (``job_try`` below the
  function's or the worker's ``max_tries``); on its last try, or with ``retry_jobs`` off,
  arq fails the job, and the attempt is an ``error``;
* ``timeout`` when the function's or the worker's ``job_timeout`` ran out (arq cancels the
  task and records an ``asyncio.TimeoutError``, which is the attempt's error: cancellation
  is all the task sees, so a cancel once the timeout has run out counts as the timeout);
* ``cancelled`` for an abort (``Job.abort``: the job is in the worker's
  ``aborting_tasks``), and for any other cancel (the worker stopping) that arq will not
  retry; one that it will (``retry_jobs`` and tries left) is a ``retry``.

``ArqRedis.enqueue_job`` is timed as the ``enqueue <function>`` function trace.

Not carried: trace context. An arq job is a fixed tuple (function, arguments, try,
enqueue time) with no field for metadata, so arq jobs start traces of their own.

Tested with arq 0.28. Its releases require redis-py < 6, so it is not in the test extra
beside Celery but in the extra ``test-arq``, which ``.ci/run`` installs into a virtualenv of
its own to run tests/integration/test_arq_integration.py and tests/test_integrations_arq.py.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Optional, Tuple

from tasktrace._logging import get_logger
from tasktrace.integrations import _jobs

_log = get_logger()

SYSTEM = "arq"
_MARK = "__tasktrace_arq__"
_CANCELLED = "cancelled"


def install(module: Any) -> None:
    """Wrap ``Worker.__init__`` (``arq.worker``) or ``ArqRedis.enqueue_job``
    (``arq.connections``), once each."""
    worker_class = getattr(module, "Worker", None)
    if worker_class is not None and not getattr(worker_class.__init__, _MARK, False):
        worker_class.__init__ = _wrap_init(worker_class.__init__)
    pool_class = getattr(module, "ArqRedis", None)
    if pool_class is not None and not getattr(pool_class.enqueue_job, _MARK, False):
        pool_class.enqueue_job = _wrap_enqueue(pool_class.enqueue_job)


def _wrap_init(init: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        try:
            for name, entry in list(self.functions.items()):
                coroutine = getattr(entry, "coroutine", None)
                if coroutine is not None and not getattr(coroutine, _MARK, False):
                    wrapped = _wrap_job(str(getattr(entry, "name", name)), coroutine, self, entry)
                    self.functions[name] = dataclasses.replace(entry, coroutine=wrapped)
        except Exception:  # noqa: BLE001 - never break the program's worker (logged)
            _log.debug("tasktrace: could not instrument an arq worker", exc_info=True)

    setattr(__init__, _MARK, True)
    return __init__


def _enqueued_at(ctx: Any) -> Optional[float]:
    when = ctx.get("enqueue_time") if isinstance(ctx, dict) else None
    try:
        return None if when is None else float(when.timestamp())
    except Exception:  # noqa: BLE001 - an odd value: no queue wait
        return None


def _setting(entry: Any, worker: Any, name: str, worker_name: str) -> Any:
    """The function's own ``name`` setting, else the worker's ``worker_name`` (arq's rule)."""
    value = getattr(entry, name, None)
    return getattr(worker, worker_name, None) if value is None else value


def _outcome(
    exc: BaseException, worker: Any, entry: Any, ctx: Any, elapsed: float
) -> Tuple[str, Optional[BaseException]]:
    """The ``job.outcome`` of an attempt that raised ``exc`` and the error to record with
    it, as arq's ``Worker.run_job`` will treat the attempt (see the module docstring)."""
    kind = type(exc).__name__
    job_try = ctx.get("job_try") if isinstance(ctx, dict) else None
    max_tries = _setting(entry, worker, "max_tries", "max_tries")
    # arq reschedules a retried job even on its last try, then fails it unrun when it is
    # picked up again ("max retries exceeded"): this attempt is the job's last.
    tries_left = not (isinstance(job_try, int) and isinstance(max_tries, int)) or (
        job_try < max_tries
    )
    will_retry = bool(getattr(worker, "retry_jobs", True)) and tries_left
    if kind in ("Retry", "RetryJob"):
        return (_jobs.RETRY if will_retry else _jobs.ERROR), exc
    if kind != "CancelledError":
        return _jobs.ERROR, exc
    job_id = ctx.get("job_id") if isinstance(ctx, dict) else None
    if job_id is not None and job_id in (getattr(worker, "aborting_tasks", None) or ()):
        return _CANCELLED, None
    timeout = _setting(entry, worker, "timeout_s", "job_timeout_s")
    # The job's task starts a moment after arq's timer does: 1% of slack.
    if isinstance(timeout, (int, float)) and timeout > 0 and elapsed >= timeout * 0.99:
        import asyncio

        return _jobs.TIMEOUT, asyncio.TimeoutError(f"arq job timeout of {timeout:g} s")
    return (_jobs.RETRY if will_retry else _CANCELLED), None


def _wrap_job(
    name: str, coroutine: Callable[..., Any], worker: Any, entry: Any
) -> Callable[..., Any]:
    queue = getattr(worker, "queue_name", None)

    @functools.wraps(coroutine)
    async def job(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        scope = None
        started = time.monotonic()
        try:
            job_try = ctx.get("job_try") if isinstance(ctx, dict) else None
            scope = _jobs.start_job(
                SYSTEM,
                name,
                job_id=ctx.get("job_id") if isinstance(ctx, dict) else None,
                queue=queue,
                retries=job_try - 1 if isinstance(job_try, int) else None,
                enqueued_at=_enqueued_at(ctx),
            )
        except Exception:  # noqa: BLE001 - never fail a job (logged)
            _log.debug("tasktrace: could not start an arq job", exc_info=True)
        try:
            result = await coroutine(ctx, *args, **kwargs)
        except BaseException as exc:
            try:
                outcome, error = _outcome(exc, worker, entry, ctx, time.monotonic() - started)
            except Exception:  # noqa: BLE001 - an odd worker: an error of the attempt (logged)
                _log.debug("tasktrace: could not tell an arq job's outcome", exc_info=True)
                outcome, error = _jobs.ERROR, exc
            _jobs.end_job(scope, outcome, error)
            raise
        _jobs.end_job(scope, _jobs.OK)
        return result

    setattr(job, _MARK, True)
    return job


def _wrap_enqueue(enqueue_job: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(enqueue_job)
    async def enqueue(self: Any, function: Any, *args: Any, **kwargs: Any) -> Any:
        scope = _jobs.open_enqueue(SYSTEM, str(function), {})
        try:
            result = await enqueue_job(self, function, *args, **kwargs)
        except BaseException as exc:
            _jobs.close_enqueue(scope, exc)
            raise
        _jobs.close_enqueue(scope)
        return result

    setattr(enqueue, _MARK, True)
    return enqueue
