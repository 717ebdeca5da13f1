"""Tests for tasktrace.transaction and its scopes: nesting, errors, threads and contexts."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, List, Optional

import pytest

from tasktrace import (
    BackgroundTask,
    WebTransaction,
    add_custom_attribute,
    background_task,
    current_transaction,
)
from tasktrace._state import STATE
from tasktrace.records import TransactionRecord
from tasktrace.transaction import is_error

Records = List[TransactionRecord]


# -- nesting (SPEC 2, rule 2) ------------------------------------------------------------------


def test_task_inside_task_is_a_segment(records: Records) -> None:
    """A task called inside a background task records no new transaction, only a segment."""

    @background_task(name="inner", group="Inner")
    def inner() -> Optional[str]:
        txn = current_transaction()
        return None if txn is None else txn.name

    @background_task(name="outer")
    def outer() -> Optional[str]:
        return inner()

    assert outer() == "outer"
    (rec,) = records
    assert rec.name == "outer"
    assert [(s.name, s.group, s.parent) for s in rec.segments] == [("inner", "Inner", -1)]


def test_async_task_inside_task_is_a_segment(records: Records) -> None:
    """An async task awaited inside an async task is a segment of the outer one."""

    @background_task(name="inner")
    async def inner() -> None:
        await asyncio.sleep(0)

    @background_task(name="outer")
    async def outer() -> None:
        await inner()

    asyncio.run(outer())
    assert [(r.name, [s.name for s in r.segments]) for r in records] == [("outer", ["inner"])]


def test_task_inside_web_transaction_converts_it(records: Records) -> None:
    """A task inside a web transaction turns it into a background task with the task's name."""

    @background_task(name="convert", group="Task")
    def job() -> None:
        pass

    before = time.time()
    with WebTransaction(name="/orders", group="Uri") as web:
        assert web.transaction is not None
        assert web.transaction.background is False
        time.sleep(0.02)
        job()
    (rec,) = records
    assert (rec.name, rec.group, rec.background) == ("convert", "Task", True)
    assert rec.start <= before + 0.01  # the start is the web transaction's, not the task's
    assert rec.duration >= 0.015
    assert [s.name for s in rec.segments] == ["convert"]


def test_finished_transaction_does_not_capture_later_work(records: Records) -> None:
    """A task started after the enclosing transaction finished gets its own transaction."""
    holder: List[Any] = []

    @background_task(name="late")
    async def late() -> None:
        await asyncio.sleep(0.02)

    async def main() -> None:
        with BackgroundTask(name="short"):
            holder.append(asyncio.ensure_future(late()))
        await holder[0]

    asyncio.run(main())
    assert sorted(r.name for r in records) == ["late", "short"]


# -- errors (SPEC 2, rule 3) -----------------------------------------------------------------


class CustomError(Exception):
    pass


def test_error_recorded_with_type_message_traceback_and_reraised(records: Records) -> None:
    """The error is recorded as module:Class, message, traceback; the same object propagates."""
    boom = CustomError("it broke")

    @background_task()
    def job() -> None:
        raise boom

    with pytest.raises(CustomError) as info:
        job()
    assert info.value is boom
    (err,) = records[0].errors
    assert err.type == f"{__name__}:CustomError"
    assert err.message == "it broke"
    assert err.traceback.startswith("Traceback (most recent call last)")
    assert "raise boom" in err.traceback
    assert "CustomError: it broke" in err.traceback
    assert abs(err.timestamp - time.time()) < 60
    assert records[0].error == err


def test_error_in_nested_task_recorded_once(records: Records) -> None:
    """An exception crossing nested tasks is recorded once, in the outer transaction."""

    @background_task(name="inner")
    def inner() -> None:
        raise ValueError("deep")

    @background_task(name="outer")
    def outer() -> None:
        inner()

    with pytest.raises(ValueError):
        outer()
    assert [e.message for e in records[0].errors] == ["deep"]


@pytest.mark.parametrize(
    ("exc", "recorded"),
    [
        (SystemExit(0), False),
        (SystemExit(None), False),
        (SystemExit(), False),
        (SystemExit(1), True),
        (SystemExit("fatal"), True),
        (GeneratorExit(), False),
        (asyncio.CancelledError(), False),
        (KeyboardInterrupt(), True),
        (ValueError("x"), True),
    ],
)
def test_which_exceptions_are_errors(records: Records, exc: BaseException, recorded: bool) -> None:
    """CancelledError, GeneratorExit and SystemExit(0/None) are not errors; others are."""
    assert is_error(exc) is recorded

    @background_task()
    def job() -> None:
        raise exc

    with pytest.raises(type(exc)) as info:
        job()
    assert info.value is exc
    assert len(records[0].errors) == (1 if recorded else 0)


def test_unprintable_exception_is_recorded(records: Records) -> None:
    """An exception whose str() fails is still recorded and re-raised."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    @background_task()
    def job() -> None:
        raise Unprintable()

    with pytest.raises(Unprintable):
        job()
    assert "Unprintable" in records[0].errors[0].message


# -- notice_error -------------------------------------------------------------------------------


# -- current transaction API --------------------------------------------------------------------


# -- custom attributes --------------------------------------------------------------------------


# -- contexts: threads and asyncio tasks (SPEC 2, rule 5) -----------------------------------


def test_each_thread_has_its_own_transaction(records: Records) -> None:
    """Tasks running at once in several threads are separate transactions."""
    barrier = threading.Barrier(4)

    @background_task(name=lambda i: f"t{i}")
    def job(i: int) -> None:
        barrier.wait(timeout=5)
        add_custom_attribute("i", i)
        txn = current_transaction()
        assert txn is not None and txn.name == f"t{i}"
        barrier.wait(timeout=5)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted((r.name, r.attributes["i"]) for r in records) == [(f"t{i}", i) for i in range(4)]
    assert len({r.thread_id for r in records}) == 4


def test_a_thread_started_inside_a_task_starts_outside_it(records: Records) -> None:
    """A new thread does not inherit the current transaction of the thread that started it."""
    seen: List[Any] = []
    with BackgroundTask(name="parent"):
        t = threading.Thread(target=lambda: seen.append(current_transaction()))
        t.start()
        t.join()
    assert seen == [None]


# -- never raising into user code (SPEC 2, rule 8) ----------------------------------------


class _BrokenRecorder:
    def record(self, record: TransactionRecord) -> None:
        raise RuntimeError("recorder is broken")

    def configure(self, settings: Any) -> None:
        pass

    def flush(self, timeout: Optional[float] = None) -> bool:
        return True

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        return True


def test_broken_recorder_never_breaks_the_call() -> None:
    """A recorder whose record() raises does not affect the decorated call or its errors."""
    STATE.set_recorder(_BrokenRecorder())  # type: ignore[arg-type]

    @background_task()
    def ok(x: int) -> int:
        return x + 1

    @background_task()
    async def aok() -> str:
        return "async"

    @background_task()
    def gen() -> Any:
        yield 1

    boom = ValueError("user error")

    @background_task()
    def fails() -> None:
        raise boom

    assert ok(1) == 2
    assert asyncio.run(aok()) == "async"
    assert list(gen()) == [1]
    with BackgroundTask(name="cm"):
        pass
    with pytest.raises(ValueError) as info:
        fails()
    assert info.value is boom


def test_broken_default_recorder_creation_never_breaks_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If creating the default recorder fails, the call still works."""
    import tasktrace.recorder

    def explode(settings: Any) -> Any:
        raise RuntimeError("cannot create recorder")

    monkeypatch.setattr(tasktrace.recorder, "create_recorder", explode)

    @background_task()
    def ok() -> str:
        return "fine"

    assert ok() == "fine"
    assert tasktrace.current_transaction() is None


def test_no_configuration_needed(records: Records) -> None:
    """Without initialize() a task is recorded under the default app name."""
    assert STATE.initialized is False

    @background_task()
    def job() -> None:
        pass

    job()
    assert records[0].app == "Python Application"


def test_transaction_methods_after_finish_do_nothing(records: Records) -> None:
    """A finished transaction ignores renames, attributes and errors."""
    with BackgroundTask(name="done") as task:
        txn = task.transaction
    assert txn is not None and txn.finished
    txn.set_name("changed")
    assert txn.add_custom_attribute("k", "v") is False
    txn.notice_error(ValueError("late"))
    assert records[0].name == "done"
    assert records[0].errors == ()
    assert repr(txn).startswith("<Transaction background")
