"""The suppression context key (tasktrace._suppress) and the epoch clock (tasktrace._clock)."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import List

import pytest

import tasktrace
from tasktrace import _clock
from tasktrace._suppress import instrumentation_suppressed, suppress_instrumentation
from tasktrace.records import TransactionRecord


@tasktrace.background_task(name="job")
def _job() -> int:
    with tasktrace.FunctionTrace("inner"):
        return 1


def test_suppressed_context_records_nothing_and_others_still_do(
    records: List[TransactionRecord],
) -> None:
    """A thread that suppressed instrumentation records nothing, calls still run; the
    program's threads are not affected."""
    results: List[int] = []

    def tasktrace_thread() -> None:
        suppress_instrumentation()
        assert instrumentation_suppressed()
        results.extend(_job() for _ in range(3))
        with tasktrace.BackgroundTask(name="block"):
            results.append(2)

    thread = threading.Thread(target=tasktrace_thread)
    thread.start()
    thread.join()
    assert results == [1, 1, 1, 2]
    assert records == []
    assert not instrumentation_suppressed()
    assert _job() == 1
    assert [r.name for r in records] == ["job"]


def test_suppression_is_a_context_key() -> None:
    """It holds in the context where it was set (and copies of it), nowhere else."""
    context = contextvars.copy_context()
    context.run(suppress_instrumentation)
    assert context.run(instrumentation_suppressed)
    assert not instrumentation_suppressed()


def test_harvest_thread_is_suppressed(records: List[TransactionRecord]) -> None:
    """A reporter that calls instrumented code (a target listed by mistake, say) creates
    no transaction from the harvest thread."""
    seen: List[bool] = []

    class Reporter:
        name = "probe"

        def export(self, batch: object) -> object:
            from tasktrace.reporters.base import ExportResult

            seen.append(instrumentation_suppressed())
            _job()
            return ExportResult(True)

        def force_flush(self, timeout: float) -> bool:
            return True

        def shutdown(self, timeout: float) -> object:
            from tasktrace.reporters.base import ExportResult

            return ExportResult(True)

    from tasktrace._state import STATE
    from tasktrace.recorder import HarvestRecorder

    _job()
    assert len(records) == 1
    recorder = HarvestRecorder(STATE.settings, reporter_factory=lambda settings: [Reporter()])
    try:
        recorder.record(records[0])
        assert recorder.flush(5.0)
    finally:
        recorder.shutdown(1.0)
    assert seen and all(seen)
    assert len(records) == 1  # the reporter's call to _job() made no transaction


def test_clock_refresh_follows_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch, records: List[TransactionRecord]
) -> None:
    """After refresh(), transactions start at epoch times of the adjusted wall clock."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)
    try:
        _clock.refresh()
        with tasktrace.BackgroundTask(name="clocked"):
            pass
    finally:
        monkeypatch.undo()
        _clock.refresh()
    assert abs(records[-1].start - (real() + 3600.0)) < 60.0
    assert abs(_clock.epoch_offset + time.perf_counter() - time.time()) < 5.0
