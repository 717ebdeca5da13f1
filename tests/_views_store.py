"""Stores for the tests of ``errors``, ``traces`` and ``trace``: written through the store's
own write path (``store.write_batches``), a ``Batch`` per harvest as the sqlite reporter
writes them."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Optional, Tuple

from tasktrace import store
from tasktrace.recorder import aggregate
from tasktrace.records import EMPTY_ATTRIBUTES, ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch

#: "Now" for the records the tests write (``--since`` cuts from the real now).
NOW = time.time()


def record(
    name: str = "jobs:a",
    *,
    app: str = "billing",
    group: str = "Function",
    start: float = NOW - 60,
    duration: float = 0.01,
    error: Optional[Tuple[str, str]] = None,
    error_time: Optional[float] = None,
    traceback: str = "Traceback (most recent call last):\nValueError: boom\n",
    trace_id: int = 0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id: int = 0x00F067AA0BA902B7,
    parent_span_id: Optional[int] = None,
    segments: Sequence[SegmentRecord] = (),
    attributes: Any = EMPTY_ATTRIBUTES,
    pid: int = 4242,
) -> TransactionRecord:
    """A transaction record with what the views show, the rest defaulted."""
    errors: Tuple[ErrorRecord, ...] = ()
    if error is not None:
        when = start + duration if error_time is None else error_time
        errors = (ErrorRecord(error[0], error[1], traceback, when),)
    children = sum(s.duration for s in segments if s.parent == -1)
    return TransactionRecord(
        app,
        name,
        group,
        True,
        start,
        duration,
        duration - children,
        None,
        pid,
        1,
        errors,
        attributes,
        tuple(segments),
        trace_id,
        span_id,
        0,
        parent_span_id,
    )


def write(path: str, *harvests: Sequence[TransactionRecord]) -> str:
    """Write each of ``harvests`` as one harvest's batch (window: its records' span)."""
    conn = store.connect(path)
    batches = []
    for records in harvests:
        records = tuple(records)
        start = min(r.start for r in records)
        end = max(r.start + r.duration for r in records)
        batches.append(Batch(records, aggregate(records), start, end, (), os.getpid()))
    store.write_batches(conn, batches)
    conn.close()
    return path
