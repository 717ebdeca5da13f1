"""Tests for tasktrace.segments: FunctionTrace and how segments nest and add up."""

from __future__ import annotations

import time
from typing import List

import pytest

from tasktrace import (
    BackgroundTask,
    FunctionTrace,
    background_task,
    current_transaction,
    function_trace,
)
from tasktrace._state import STATE
from tasktrace.records import TransactionRecord

Records = List[TransactionRecord]


def test_segments_nest_with_parent_index_start_and_duration(records: Records) -> None:
    """Nested traces record name, group, start offset, duration and the parent's index."""

    @function_trace(name="leaf", group="Leaf")
    def leaf() -> None:
        time.sleep(0.01)

    @function_trace(name="branch")
    def branch() -> None:
        leaf()
        leaf()

    @background_task(name="root")
    def root() -> None:
        branch()
        with FunctionTrace("block", "Block"):
            leaf()

    root()
    (rec,) = records
    assert [(s.name, s.group, s.parent) for s in rec.segments] == [
        ("branch", "Function", -1),
        ("leaf", "Leaf", 0),
        ("leaf", "Leaf", 0),
        ("block", "Block", -1),
        ("leaf", "Leaf", 3),
    ]
    segs = rec.segments
    for seg in segs:
        assert 0.0 <= seg.start <= rec.duration
        assert 0.0 <= seg.duration <= rec.duration
        assert seg.start + seg.duration <= rec.duration + 1e-6
    assert segs[1].duration >= 0.009
    # children start within their parent and siblings start in order
    assert segs[0].start <= segs[1].start <= segs[2].start
    assert segs[2].start >= segs[1].start + segs[1].duration - 1e-6
    assert segs[1].start + segs[1].duration <= segs[0].start + segs[0].duration + 1e-6
    assert segs[3].start >= segs[0].start + segs[0].duration - 1e-6


def test_exclusive_is_duration_minus_direct_children(records: Records) -> None:
    """The transaction's exclusive time is its duration minus its direct children's."""

    @function_trace()
    def child() -> None:
        time.sleep(0.02)

    @function_trace()
    def parent() -> None:
        child()
        time.sleep(0.01)

    @background_task()
    def job() -> None:
        parent()
        child()
        time.sleep(0.01)

    job()
    (rec,) = records
    direct = sum(s.duration for s in rec.segments if s.parent == -1)
    assert rec.exclusive == pytest.approx(rec.duration - direct, abs=1e-9)
    assert rec.exclusive >= 0.009
    assert rec.exclusive < rec.duration


def test_exclusive_equals_duration_without_segments(records: Records) -> None:
    """A transaction without segments has exclusive == duration."""
    with BackgroundTask(name="flat"):
        pass
    assert records[0].exclusive == records[0].duration
    assert records[0].segments == ()


def test_function_trace_context_manager_outside_transaction_is_a_no_op(
    records: Records,
) -> None:
    """FunctionTrace outside a transaction runs the block and records nothing."""
    ran = []
    with FunctionTrace("nothing"):
        ran.append(True)
    assert ran == [True]
    assert records == []


def test_function_trace_default_name_is_the_enclosing_function(records: Records) -> None:
    """FunctionTrace() without a name is named after the function it is used in."""
    with BackgroundTask(name="t"), FunctionTrace():
        pass
    assert [(s.name, s.group) for s in records[0].segments] == [
        (f"{__name__}:test_function_trace_default_name_is_the_enclosing_function", "Function")
    ]


def test_function_trace_is_not_current_transaction(records: Records) -> None:
    """Inside a trace the current transaction is still the task."""
    with BackgroundTask(name="t") as task:
        with FunctionTrace("inner"):
            assert current_transaction() is task.transaction
        assert current_transaction() is task.transaction


def test_traced_exception_propagates_unchanged_and_closes_segment(records: Records) -> None:
    """An exception through a trace is re-raised as is; the segment still ends."""
    boom = LookupError("x")

    @function_trace(name="raises")
    def raises() -> None:
        raise boom

    with BackgroundTask(name="t"):
        with pytest.raises(LookupError) as info:
            raises()
        assert info.value is boom
        with pytest.raises(LookupError), FunctionTrace("cm-raises"):
            raise boom
    (rec,) = records
    assert [s.name for s in rec.segments] == ["raises", "cm-raises"]
    assert all(s.duration >= 0.0 for s in rec.segments)


def test_caught_exception_in_trace_is_not_a_transaction_error(records: Records) -> None:
    """An exception handled by the caller is not a task error, whichever form of trace."""

    @function_trace(name="fixed")
    def fixed() -> None:
        raise KeyError("handled")

    @function_trace(name=lambda: "computed")
    def computed() -> None:
        raise KeyError("handled")

    with BackgroundTask(name="t"):
        for form in (fixed, computed):
            try:
                form()
            except KeyError:
                pass
        try:
            with FunctionTrace("cm"):
                raise KeyError("handled")
        except KeyError:
            pass
    assert records[0].errors == ()
    assert [s.name for s in records[0].segments] == ["fixed", "computed", "cm"]


def test_segment_limit(records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments beyond max_segments are counted as dropped; the calls still run."""
    monkeypatch.setattr(STATE, "settings", STATE.settings.__class__(max_segments=3))

    @function_trace()
    def step() -> int:
        return 1

    with BackgroundTask(name="t"):
        assert sum(step() for _ in range(5)) == 5
        with FunctionTrace("cm"):
            pass
    (rec,) = records
    assert len(rec.segments) == 3
    assert rec.dropped_segments == 3
