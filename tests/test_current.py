"""Tests for tasktrace.current: the functions acting on the current transaction."""

from __future__ import annotations

import sys
from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasktrace import (
    BackgroundTask,
    add_custom_attribute,
    background_task,
    current_transaction,
    ignore_transaction,
    notice_error,
    set_transaction_name,
)
from tasktrace.records import TransactionRecord
from tasktrace.testing import capture_transactions
from tasktrace.transaction import MAX_ATTRIBUTES, Transaction

Records = List[TransactionRecord]


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
