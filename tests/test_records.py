"""Tests for tasktrace.records: the immutable finished records reporters receive."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import List

import pytest

from tasktrace import (
    BackgroundTask,
    ErrorRecord,
    SegmentRecord,
    TransactionRecord,
    add_custom_attribute,
    background_task,
    function_trace,
)
from tasktrace._state import STATE

Records = List[TransactionRecord]


def _one(records: Records) -> TransactionRecord:
    with BackgroundTask(name="rec", group="Task"):
        add_custom_attribute("k", "v")
        with pytest.raises(ValueError):
            function_trace(name="seg")(_raise)()
    (rec,) = records
    return rec


def _raise() -> None:
    raise ValueError("seg failed")


def test_record_fields(records: Records) -> None:
    """A record carries app, name, group, background, times, pid, thread and ids."""
    before = time.time()
    rec = _one(records)
    assert rec.app == "Python Application"
    assert (rec.name, rec.group, rec.background) == ("rec", "Task", True)
    assert before - 1 <= rec.start <= time.time()
    assert 0.0 <= rec.exclusive <= rec.duration
    assert rec.pid == os.getpid()
    assert rec.thread_id == threading.get_ident()
    assert rec.metric_name == "Task/rec"
    assert rec.dropped_segments == 0
    assert [type(s) for s in rec.segments] == [SegmentRecord]
    assert rec.errors == ()  # a handled exception in a trace is not the task's error


@pytest.mark.parametrize("cls", [TransactionRecord, ErrorRecord, SegmentRecord])
def test_records_are_slotted(cls: type) -> None:
    """Record classes declare empty __slots__, so instances have no __dict__."""
    assert cls.__slots__ == ()


def test_record_is_immutable(records: Records) -> None:
    """Assigning to a record, its attributes mapping or its segments raises."""
    rec = _one(records)
    assert not hasattr(rec, "__dict__")
    with pytest.raises(AttributeError):
        rec.name = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        rec.new_field = 1  # type: ignore[attr-defined]
    assert isinstance(rec.attributes, Mapping)
    with pytest.raises(TypeError):
        rec.attributes["k"] = "changed"  # type: ignore[index]
    assert isinstance(rec.segments, tuple)
    assert isinstance(rec.errors, tuple)
    with pytest.raises(AttributeError):
        rec.segments[0].name = "x"  # type: ignore[misc]


def test_error_record_fields(records: Records) -> None:
    """An ErrorRecord has type, message, traceback text and timestamp."""

    @background_task()
    def job() -> None:
        raise ZeroDivisionError("div")

    with pytest.raises(ZeroDivisionError):
        job()
    err = records[0].error
    assert isinstance(err, ErrorRecord)
    assert err.type == "builtins:ZeroDivisionError"
    assert err.message == "div"
    assert "ZeroDivisionError: div" in err.traceback
    assert abs(err.timestamp - time.time()) < 60
    with pytest.raises(AttributeError):
        err.message = "x"  # type: ignore[misc]


def test_no_error_property_is_none(records: Records) -> None:
    """A record without errors has error None."""
    with BackgroundTask(name="ok"):
        pass
    assert records[0].error is None


@pytest.fixture
def cpu_time_on() -> None:
    """Turn on the cpu_time setting (off by default) for one test."""
    STATE.cpu_time = True


def test_cpu_time_is_none_by_default(records: Records) -> None:
    """Without the cpu_time setting no CPU clock is read and cpu_time is None."""
    with BackgroundTask(name="busy"):
        pass
    assert records[0].cpu_time is None


@pytest.mark.usefixtures("cpu_time_on")
def test_cpu_time_of_busy_loop(records: Records) -> None:
    """With cpu_time on, a busy loop has cpu_time > 0 and not more than its duration."""
    with BackgroundTask(name="busy"):
        deadline = time.perf_counter() + 0.05
        while time.perf_counter() < deadline:
            sum(range(100))
    rec = records[0]
    assert rec.cpu_time > 0.0
    assert rec.cpu_time <= rec.duration + 0.01


@pytest.mark.usefixtures("cpu_time_on")
def test_cpu_time_excludes_sleep(records: Records) -> None:
    """Sleeping costs wall time but almost no CPU time."""
    with BackgroundTask(name="sleepy"):
        time.sleep(0.1)
    rec = records[0]
    assert rec.duration >= 0.09
    assert 0.0 <= rec.cpu_time < rec.duration


def test_trace_and_span_ids(records: Records) -> None:
    """trace_id is a non-zero 128-bit int, span_id a non-zero 64-bit int, hex forms padded."""

    @background_task()
    def job() -> None:
        pass

    for _ in range(50):
        job()
    for rec in records:
        assert 0 < rec.trace_id < 2**128
        assert 0 < rec.span_id < 2**64
        assert len(rec.trace_id_hex) == 32 and int(rec.trace_id_hex, 16) == rec.trace_id
        assert len(rec.span_id_hex) == 16 and int(rec.span_id_hex, 16) == rec.span_id
        assert rec.trace_id_hex == rec.trace_id_hex.lower()
    assert len({r.trace_id for r in records}) == 50
    assert len({r.span_id for r in records}) == 50


def test_hex_ids_are_zero_padded() -> None:
    """Small ids are padded to the W3C width."""
    rec = TransactionRecord(
        "a", "n", "g", True, 0.0, 0.0, 0.0, 0.0, 1, 1, (), {}, (), trace_id=1, span_id=2
    )
    assert rec.trace_id_hex == "0" * 31 + "1"
    assert rec.span_id_hex == "0" * 15 + "2"
