"""Helpers for testing code instrumented with tasktrace: capture finished transactions.

Example::

    from tasktrace.testing import capture_transactions

    def test_job_is_a_task():
        with capture_transactions() as records:
            run_job()
        assert [r.name for r in records] == ["jobs:run_job"]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import List, Optional

from tasktrace._state import STATE
from tasktrace.config import Settings
from tasktrace.records import TransactionRecord

__all__ = ["MemoryRecorder", "capture_transactions"]


class MemoryRecorder:
    """A recorder that keeps every finished transaction in a list, in finishing order."""

    def __init__(self) -> None:
        self.records: List[TransactionRecord] = []
        self._lock = threading.Lock()

    def record(self, record: TransactionRecord) -> None:
        """Keep ``record`` (list.append is atomic, so threads need no lock here)."""
        self.records.append(record)

    def configure(self, settings: Settings) -> None:
        """Nothing to configure."""

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Nothing is pending: always True."""
        return True

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Nothing to stop: always True."""
        return True

    def clear(self) -> None:
        """Forget the records kept so far."""
        with self._lock:
            self.records.clear()


@contextmanager
def capture_transactions() -> Iterator[List[TransactionRecord]]:
    """Route finished transactions into a list for the duration of the block.

    Yields the list; the recorder in use before (if any) is restored afterwards.
    """
    recorder = MemoryRecorder()
    with STATE.lock:
        previous = STATE.recorder
        STATE.set_recorder(recorder)
    try:
        yield recorder.records
    finally:
        with STATE.lock:
            if STATE.recorder is recorder:
                STATE.set_recorder(previous)
