"""Tests for tasktrace.reporters.memory."""

from __future__ import annotations

import os
import time

from tasktrace.recorder import aggregate
from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch, DropCount, MetricKey
from tasktrace.reporters.memory import MemoryReporter


def _record(duration: float) -> TransactionRecord:
    return TransactionRecord(
        "app",
        "jobs:run",
        "Function",
        True,
        time.time(),
        duration,
        duration,
        0.0,
        os.getpid(),
        1,
        (),
        {},
        (),
        1,
        1,
    )


def test_keeps_batches_records_metrics_and_drops() -> None:
    """Exported batches are kept; metrics merge per key and drops sum per reason."""
    memory = MemoryReporter()
    for duration in (1.0, 3.0):
        records = (_record(duration),)
        batch = Batch(records, aggregate(records), drops=(DropCount("app", "buffer_full", 2),))
        assert memory.export(batch).success
    assert len(memory.records) == 2
    stats = memory.metrics()[MetricKey("app", "jobs:run", "Function")]
    assert (stats.calls, stats.min, stats.max, stats.total) == (2, 1.0, 3.0, 4.0)
    assert memory.drops() == {"buffer_full": 4}
    assert memory.wait_for(2, timeout=0.1)
    memory.clear()
    assert memory.records == []


def test_refuses_after_shutdown() -> None:
    """After shutdown, exports fail and count their records as dropped."""
    memory = MemoryReporter()
    memory.shutdown()
    result = memory.export(Batch((_record(1.0),)))
    assert not result.success and result.dropped == 1
