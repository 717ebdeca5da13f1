"""Tests for tasktrace.testing: capture_transactions and MemoryRecorder."""

from __future__ import annotations

import threading

from tasktrace import BackgroundTask, background_task
from tasktrace._state import STATE
from tasktrace.testing import MemoryRecorder, capture_transactions


def test_capture_transactions_yields_finished_records() -> None:
    """Transactions finished in the block appear in the yielded list, in finishing order."""

    @background_task(name="captured")
    def job() -> None:
        pass

    with capture_transactions() as records:
        job()
        with BackgroundTask(name="second"):
            pass
    assert [r.name for r in records] == ["captured", "second"]


def test_capture_transactions_restores_previous_recorder() -> None:
    """The recorder in use before the block is back afterwards; nested captures are separate."""
    outer_recorder = MemoryRecorder()
    STATE.set_recorder(outer_recorder)  # type: ignore[arg-type]
    with capture_transactions() as outer:
        with capture_transactions() as inner, BackgroundTask(name="inner"):
            pass
        with BackgroundTask(name="outer"):
            pass
    assert [r.name for r in inner] == ["inner"]
    assert [r.name for r in outer] == ["outer"]
    assert STATE.recorder is outer_recorder
    with BackgroundTask(name="after"):
        pass
    assert [r.name for r in outer_recorder.records] == ["after"]


def test_capture_transactions_restores_lazy_default() -> None:
    """Without a recorder before, none is left behind (the default is again created lazily)."""
    assert STATE.recorder is None
    with capture_transactions():
        pass
    assert STATE.recorder is None


def test_capture_transactions_from_threads() -> None:
    """Records finished in other threads are captured too."""

    @background_task(name="threaded")
    def job() -> None:
        pass

    with capture_transactions() as records:
        threads = [threading.Thread(target=job) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r.name for r in records] == ["threaded"] * 8


def test_memory_recorder_protocol() -> None:
    """MemoryRecorder keeps records, flushes and shuts down trivially and can be cleared."""
    recorder = MemoryRecorder()
    STATE.set_recorder(recorder)  # type: ignore[arg-type]
    with BackgroundTask(name="kept"):
        pass
    assert len(recorder.records) == 1
    assert recorder.flush(1.0) is True
    assert recorder.shutdown(1.0) is True
    recorder.configure(STATE.settings)
    recorder.clear()
    assert recorder.records == []
