"""The offset between the wall clock and ``time.perf_counter()``, one per process.

A transaction's epoch start is its ``perf_counter`` start plus :data:`epoch_offset`, which
saves a clock read per task. The harvest thread calls :func:`refresh` at each harvest so
that wall-clock adjustments are followed. A leaf module: the recorder refreshes the clock
without importing the transaction code that reads it.
"""

from __future__ import annotations

import time

#: ``time.time()`` minus ``time.perf_counter()``, as of the last refresh.
epoch_offset = time.time() - time.perf_counter()


def refresh() -> None:
    """Re-read the offset (wall-clock adjustments are then followed)."""
    global epoch_offset
    epoch_offset = time.time() - time.perf_counter()
