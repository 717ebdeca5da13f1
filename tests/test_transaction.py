"""Tests for tasktrace.transaction: nesting, errors, contexts and the current-transaction API."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasktrace import (
    BackgroundTask,
    WebTransaction,
    add_custom_attribute,
    background_task,
    current_transaction,
    ignore_transaction,
    notice_error,
    set_transaction_name,
)
from tasktrace._state import STATE
from tasktrace.records import TransactionRecord
from tasktrace.testing import capture_transactions
from tasktrace.transaction import MAX_ATTRIBUTES, Transaction, is_error

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


def test_web_transaction_alone_stays_web(records: Records) -> None:
    """A web transaction without a task inside is recorded as non-background."""
    with WebTransaction(name="/health"):
        pass
    assert [(r.name, r.group, r.background) for r in records] == [("/health", "Uri", False)]


def test_background_task_context_manager(records: Records) -> None:
    """``with BackgroundTask(app, name, group=...)`` records a task; name defaults to caller."""
    with BackgroundTask("app", "nightly", group="Task") as task:
        assert task.transaction is current_transaction()
    with BackgroundTask():
        pass
    assert [(r.app, r.name, r.group) for r in records] == [
        ("app", "nightly", "Task"),
        ("Python Application", f"{__name__}:test_background_task_context_manager", "Function"),
    ]


def test_background_task_context_manager_records_and_reraises(records: Records) -> None:
    """An exception leaving the block is recorded and propagates unchanged."""
    boom = OSError("disk")
    with pytest.raises(OSError) as info, BackgroundTask(name="cm"):
        raise boom
    assert info.value is boom
    assert [e.type for e in records[0].errors] == ["builtins:OSError"]


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


def test_notice_error_defaults_to_the_exception_being_handled(records: Records) -> None:
    """notice_error() records the exception in flight and does not raise."""
    with BackgroundTask(name="t"):
        try:
            raise KeyError("k")
        except KeyError:
            notice_error()
        notice_error()  # nothing being handled: nothing recorded
    assert [e.type for e in records[0].errors] == ["builtins:KeyError"]


def test_notice_error_accepts_instance_and_exc_info(records: Records) -> None:
    """An explicit exception instance and an exc_info tuple are both recorded."""
    with BackgroundTask(name="t"):
        notice_error(ValueError("instance"))
        try:
            raise TypeError("tuple")
        except TypeError:
            info = sys.exc_info()
        notice_error(info)  # type: ignore[arg-type]
        notice_error((None, None, None))  # type: ignore[arg-type]
        notice_error(())  # type: ignore[arg-type]
    assert [(e.type, e.message) for e in records[0].errors] == [
        ("builtins:ValueError", "instance"),
        ("builtins:TypeError", "tuple"),
    ]


def test_notice_error_records_each_distinct_exception(records: Records) -> None:
    """Distinct exceptions noticed one after another are all recorded (ids may be reused)."""
    with BackgroundTask(name="t"):
        for i in range(5):
            try:
                raise ValueError(i)
            except ValueError:
                notice_error()
    assert [e.message for e in records[0].errors] == ["0", "1", "2", "3", "4"]


def test_noticed_then_propagating_exception_recorded_once(records: Records) -> None:
    """An exception noticed and then leaving the task is recorded only once."""

    @background_task()
    def job() -> None:
        try:
            raise RuntimeError("once")
        except RuntimeError:
            notice_error()
            raise

    with pytest.raises(RuntimeError):
        job()
    assert [e.message for e in records[0].errors] == ["once"]


def test_notice_error_ignores_non_exceptions(records: Records) -> None:
    """Something that is not an exception is ignored, never raised about."""
    with BackgroundTask(name="t"):
        notice_error("not an exception")  # type: ignore[arg-type]
        notice_error(42)  # type: ignore[arg-type]
    assert records[0].errors == ()


def test_notice_error_outside_transaction_is_a_no_op(records: Records) -> None:
    """notice_error outside a transaction does nothing and does not raise."""
    notice_error(ValueError("nowhere"))
    assert records == []


# -- current transaction API --------------------------------------------------------------------


def test_current_transaction_none_outside() -> None:
    """current_transaction() is None outside any transaction."""
    assert current_transaction() is None


def test_current_transaction_inside_task(records: Records) -> None:
    """Inside a task current_transaction() is a Transaction with the task's name."""

    @background_task(name="job", group="Task")
    def job() -> Transaction:
        txn = current_transaction()
        assert txn is not None
        return txn

    txn = job()
    assert isinstance(txn, Transaction)
    assert (txn.name, txn.group, txn.background, txn.app_name) == (
        "job",
        "Task",
        True,
        "Python Application",
    )
    assert current_transaction() is None


def test_set_transaction_name(records: Records) -> None:
    """set_transaction_name renames the current transaction, optionally regrouping it."""
    with BackgroundTask(name="a", group="G"):
        set_transaction_name("b")
    with BackgroundTask(name="c", group="G"):
        set_transaction_name("d", "H")
    set_transaction_name("outside")  # no-op
    assert [(r.name, r.group) for r in records] == [("b", "G"), ("d", "H")]


def test_set_transaction_name_from_nested_task_renames_outer(records: Records) -> None:
    """Renaming from inside a nested task renames the one transaction there is."""

    @background_task(name="inner")
    def inner() -> None:
        set_transaction_name("renamed")

    with BackgroundTask(name="outer"):
        inner()
    assert [r.name for r in records] == ["renamed"]


def test_ignore_transaction(records: Records) -> None:
    """An ignored transaction records nothing; ignore_transaction(False) undoes it."""

    @background_task(name="ignored")
    def ignored() -> int:
        ignore_transaction()
        return 1

    assert ignored() == 1
    with BackgroundTask(name="kept"):
        ignore_transaction()
        ignore_transaction(False)
    ignore_transaction()  # outside: no-op
    assert [r.name for r in records] == ["kept"]


# -- custom attributes --------------------------------------------------------------------------


def test_add_custom_attribute_types_and_limits(records: Records) -> None:
    """str/int/float/bool kept; long strings cut to 255; bad keys or values return False."""
    with BackgroundTask(name="t"):
        assert add_custom_attribute("s", "v") is True
        assert add_custom_attribute("i", 3) is True
        assert add_custom_attribute("f", 1.5) is True
        assert add_custom_attribute("b", True) is True
        assert add_custom_attribute("long", "x" * 1000) is True
        assert add_custom_attribute("k" * 255, 1) is True
        assert add_custom_attribute("k" * 256, 1) is False
        assert add_custom_attribute(1, 1) is False  # type: ignore[arg-type]
        assert add_custom_attribute("list", [1]) is False
        assert add_custom_attribute("none", None) is False
        assert add_custom_attribute("obj", object()) is False
    attrs = records[0].attributes
    assert attrs["s"] == "v" and attrs["i"] == 3 and attrs["f"] == 1.5 and attrs["b"] is True
    assert attrs["long"] == "x" * 255
    assert set(attrs) == {"s", "i", "f", "b", "long", "k" * 255}


def test_add_custom_attribute_at_most_128(records: Records) -> None:
    """At most 128 attributes per transaction; an existing key may still be updated."""
    with BackgroundTask(name="t"):
        results = [add_custom_attribute(f"a{i}", i) for i in range(MAX_ATTRIBUTES + 5)]
        assert add_custom_attribute("a0", "updated") is True
    assert MAX_ATTRIBUTES == 128
    assert results.count(True) == 128
    assert len(records[0].attributes) == 128
    assert records[0].attributes["a0"] == "updated"


def test_add_custom_attribute_outside_transaction() -> None:
    """Outside a transaction add_custom_attribute returns False."""
    assert add_custom_attribute("k", "v") is False


def test_attributes_of_one_transaction_do_not_leak(records: Records) -> None:
    """Attributes belong to one transaction only."""
    with BackgroundTask(name="a"):
        add_custom_attribute("only", "a")
    with BackgroundTask(name="b"):
        pass
    assert dict(records[0].attributes) == {"only": "a"}
    assert dict(records[1].attributes) == {}


_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=400),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
)


@settings(max_examples=150, deadline=None)
@given(key=_anything, value=_anything)
def test_add_custom_attribute_never_raises(key: Any, value: Any) -> None:
    """Whatever the key and value, add_custom_attribute returns a bool and never raises."""
    with capture_transactions() as captured, BackgroundTask(name="t"):
        kept = add_custom_attribute(key, value)
    assert isinstance(kept, bool)
    attrs = captured[0].attributes
    if kept:
        assert isinstance(key, str) and 0 < len(key) <= 255
        assert isinstance(attrs[key], (str, int, float, bool))
        if isinstance(value, str):
            assert attrs[key] == value[:255]
    else:
        assert len(attrs) == 0


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


def test_background_task_context_manager_when_disabled(records: Records) -> None:
    """With the agent disabled the context manager runs its block and records nothing."""
    STATE.enabled = False
    with BackgroundTask(name="off") as task:
        assert task.transaction is None
        assert current_transaction() is None
    with WebTransaction(name="/off"):
        pass
    assert records == []
