"""arq: every job an arq worker runs is a background-task transaction, named by the job
function's name in group ``arq``.

arq calls each job as ``function.coroutine(ctx, ...)`` in an asyncio task of its own, with
the job's id, try and enqueue time in ``ctx``. When ``arq.worker`` is imported,
``Worker.__init__`` is wrapped so that, once the worker has built its table of
``Function``/``CronJob`` entries, each entry's ``coroutine`` is wrapped (a copy of the
entry, ``dataclasses.replace``): the job's transaction opens inside the job's own asyncio
task, with ``job.id``, ``job.queue`` (the worker's queue), ``job.retries`` (``job_try``
minus one) and ``job.queue_wait_ms`` from ``enqueue_time``, and ends with ``job.outcome``
``ok``, ``error``, ``retry`` (``arq.worker.Retry``) or ``cancelled`` (a timeout or an
abort: arq cancels the task). ``ArqRedis.enqueue_job`` is timed as the ``enqueue
<function>`` function trace.

Not carried: trace context. An arq job is a fixed tuple (function, arguments, try,
enqueue time) with no field for metadata, so arq jobs start traces of their own.

Tested with arq 0.28 (its releases require redis-py < 6, so it is not in the test extra
beside Celery; see tests/integration/test_arq_integration.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

from tasktrace._logging import get_logger
from tasktrace.integrations import _jobs

_log = get_logger()

SYSTEM = "arq"
_MARK = "__tasktrace_arq__"


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
            queue = getattr(self, "queue_name", None)
            for name, entry in list(self.functions.items()):
                coroutine = getattr(entry, "coroutine", None)
                if coroutine is not None and not getattr(coroutine, _MARK, False):
                    wrapped = _wrap_job(str(getattr(entry, "name", name)), coroutine, queue)
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


def _wrap_job(name: str, coroutine: Callable[..., Any], queue: Any) -> Callable[..., Any]:
    @functools.wraps(coroutine)
    async def job(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        scope = None
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
            kind = type(exc).__name__
            if kind == "Retry":
                outcome = _jobs.RETRY
            elif kind == "CancelledError":
                outcome = "cancelled"
            else:
                outcome = _jobs.ERROR
            _jobs.end_job(scope, outcome, exc if outcome != "cancelled" else None)
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
