"""tasktrace.integrations._arq in process: the outcome of each attempt as arq's
``Worker.run_job`` will treat it (retry only while arq runs the job again, timeout, abort),
against a stand-in worker built as arq's is; and, where arq is installed, the same wrapping
on arq's own ``Worker`` and ``Retry``.

The real worker and Redis are in ``tests/integration/test_arq_integration.py``. arq's
releases require redis-py < 6, so arq is in the extra ``test-arq``, not ``test``: the tests
marked below need it and run in ``.ci/run``'s arq suite, the others everywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import types
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import pytest

from tasktrace.integrations import _arq
from tasktrace.records import TransactionRecord


class Retry(RuntimeError):
    """Stands in for ``arq.worker.Retry`` (the integration knows it by name)."""


@dataclasses.dataclass
class Function:
    """arq's ``Function``: a frozen-enough dataclass the worker copies with its coroutine."""

    name: str
    coroutine: Any
    timeout_s: Optional[float] = None
    keep_result_s: Optional[float] = None
    keep_result_forever: Optional[bool] = None
    max_tries: Optional[int] = None


class Worker:
    """The parts of arq's ``Worker`` the integration reads, built as arq builds them."""

    def __init__(
        self,
        functions: List[Function],
        *,
        max_tries: int = 5,
        job_timeout: float = 300,
        retry_jobs: bool = True,
    ) -> None:
        self.functions: Dict[str, Function] = {f.name: f for f in functions}
        self.queue_name = "arq:queue"
        self.max_tries = max_tries
        self.job_timeout_s = job_timeout
        self.retry_jobs = retry_jobs
        self.aborting_tasks: set = set()


@pytest.fixture
def worker_class() -> type:
    """A fresh stand-in ``Worker`` class with the integration installed on it."""
    module = types.SimpleNamespace(Worker=type("Worker", (Worker,), {}))
    _arq.install(module)
    return module.Worker  # type: ignore[no-any-return]


def _ctx(job_try: int = 1, job_id: str = "j1") -> Dict[str, Any]:
    return {
        "job_id": job_id,
        "job_try": job_try,
        "enqueue_time": datetime.now(timezone.utc),
        "score": 0,
    }


async def _fail(ctx: Any) -> None:
    raise Retry("again")


async def _boom(ctx: Any) -> None:
    raise KeyError("boom")


async def _sleep(ctx: Any) -> None:
    await asyncio.sleep(60)


def _run(worker: Any, name: str, ctx: Dict[str, Any]) -> None:
    with pytest.raises(BaseException):  # noqa: B017 - the job's own exception goes on to arq
        asyncio.run(worker.functions[name].coroutine(ctx))


def _outcomes(records: List[TransactionRecord]) -> List[Any]:
    return [r.attributes["job.outcome"] for r in records]


def test_retry_with_tries_left_is_a_retry(
    worker_class: type, records: List[TransactionRecord]
) -> None:
    """``Retry`` below ``max_tries`` is a retry, an error of that attempt."""
    worker = worker_class([Function("fail", _fail)], max_tries=3)
    _run(worker, "fail", _ctx(job_try=2))
    (job,) = records
    assert _outcomes(records) == ["retry"]
    assert (job.name, job.group, job.attributes["job.retries"]) == ("fail", "arq", 1)
    assert [e.type for e in job.errors] == [f"{__name__}:Retry"]


def test_retry_on_the_last_try_is_an_error(
    worker_class: type, records: List[TransactionRecord]
) -> None:
    """``Retry`` on the job's last try (the function's ``max_tries`` over the worker's) is
    an error: arq fails the job unrun when it next picks it up."""
    worker = worker_class([Function("fail", _fail, max_tries=2)], max_tries=5)
    _run(worker, "fail", _ctx(job_try=1))
    _run(worker, "fail", _ctx(job_try=2))
    assert _outcomes(records) == ["retry", "error"]
    assert [e.type for e in records[1].errors] == [f"{__name__}:Retry"]


def test_retry_with_retry_jobs_off_is_an_error(
    worker_class: type, records: List[TransactionRecord]
) -> None:
    """With the worker's ``retry_jobs`` off arq fails a job that raises ``Retry``."""
    worker = worker_class([Function("fail", _fail)], retry_jobs=False)
    _run(worker, "fail", _ctx(job_try=1))
    assert _outcomes(records) == ["error"]


def test_an_exception_is_an_error(worker_class: type, records: List[TransactionRecord]) -> None:
    """Any other exception is an error, with tries left or not."""
    worker = worker_class([Function("boom", _boom)])
    _run(worker, "boom", _ctx(job_try=1))
    assert _outcomes(records) == ["error"]
    assert [e.type for e in records[0].errors] == ["builtins:KeyError"]


def test_a_job_timeout_is_a_timeout(worker_class: type, records: List[TransactionRecord]) -> None:
    """A job cancelled by arq's ``wait_for`` once its ``timeout_s`` ran out is a timeout,
    with arq's ``TimeoutError`` as its error (not a silent cancel)."""
    worker = worker_class([Function("slow", _sleep, timeout_s=0.05)])

    async def run_job() -> None:
        task = asyncio.get_running_loop().create_task(worker.functions["slow"].coroutine(_ctx()))
        await asyncio.wait_for(task, 0.05)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(run_job())
    (job,) = records
    assert _outcomes(records) == ["timeout"]
    assert [e.type for e in job.errors] == [
        f"{asyncio.TimeoutError.__module__}:{asyncio.TimeoutError.__qualname__}"
    ]


async def _cancel_soon(worker: Any, name: str, ctx: Dict[str, Any]) -> None:
    task = asyncio.get_running_loop().create_task(worker.functions[name].coroutine(ctx))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_an_abort_is_cancelled(worker_class: type, records: List[TransactionRecord]) -> None:
    """A job cancelled while in the worker's ``aborting_tasks`` (``Job.abort``) is
    cancelled, with no error."""
    worker = worker_class([Function("slow", _sleep)])
    worker.aborting_tasks.add("j1")
    asyncio.run(_cancel_soon(worker, "slow", _ctx(job_id="j1")))
    assert _outcomes(records) == ["cancelled"]
    assert records[0].errors == ()


def test_a_stop_is_a_retry_while_arq_runs_it_again(
    worker_class: type, records: List[TransactionRecord]
) -> None:
    """A job cancelled by the worker stopping is a retry when arq will run it again, and
    cancelled on its last try or with ``retry_jobs`` off."""
    worker = worker_class([Function("slow", _sleep)], max_tries=2)
    asyncio.run(_cancel_soon(worker, "slow", _ctx(job_try=1)))
    asyncio.run(_cancel_soon(worker, "slow", _ctx(job_try=2)))
    no_retries = worker_class([Function("slow", _sleep)], retry_jobs=False)
    asyncio.run(_cancel_soon(no_retries, "slow", _ctx(job_try=1)))
    assert _outcomes(records) == ["retry", "cancelled", "cancelled"]
    assert all(r.errors == () for r in records)


def test_arqs_own_worker_is_wrapped(records: List[TransactionRecord]) -> None:
    """On arq's own ``Worker``, each function's coroutine is wrapped and arq's ``Retry`` on
    the last try is an error."""
    pytest.importorskip(
        "arq", reason="arq is not installed: it is in the extra test-arq (.ci/run's arq suite)"
    )
    from arq import worker as arq_worker

    _arq.install(arq_worker)

    async def fail(ctx: Any) -> None:
        raise arq_worker.Retry(defer=0)

    async def build() -> Any:
        return arq_worker.Worker(
            functions=[arq_worker.func(fail, name="fail", max_tries=1)],
            queue_name="q",
            handle_signals=False,
        )

    worker = asyncio.run(build())
    assert getattr(worker.functions["fail"].coroutine, "__tasktrace_arq__", False)
    _run(worker, "fail", _ctx(job_try=1))
    assert _outcomes(records) == ["error"]
    assert [e.type for e in records[0].errors] == ["arq.worker:Retry"]
