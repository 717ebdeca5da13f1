"""An in-memory reporter: keeps every batch it is given, for tests and for programs that
want to inspect their own transactions.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Dict, List, Optional

from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch, ExportResult, MetricKey, MetricStats

if TYPE_CHECKING:
    from tasktrace.config import Settings

__all__ = ["MemoryReporter"]


class MemoryReporter:
    """Keeps batches in a list. Thread-safe: tests read while the harvest thread writes.

    Args:
        settings: Ignored; accepted so the registry can build it like any reporter.
        name: The reporter name (``"memory"``).
    """

    def __init__(self, settings: Optional[Settings] = None, *, name: str = "memory") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._batches: List[Batch] = []
        self._changed = threading.Condition(self._lock)
        self.flushes = 0
        self.shut_down = False

    def export(self, batch: Batch) -> ExportResult:
        """Keep ``batch``; always succeeds (until shut down)."""
        with self._lock:
            if self.shut_down:
                return ExportResult(False, dropped=len(batch.records), message="shut down")
            self._batches.append(batch)
            self._changed.notify_all()
        return ExportResult(True, exported=len(batch.records))

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        """Nothing is held back; counts the call."""
        with self._lock:
            self.flushes += 1
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Later exports are refused (and counted as dropped by the recorder)."""
        with self._lock:
            self.shut_down = True

    @property
    def batches(self) -> List[Batch]:
        """Every batch received, oldest first (a copy)."""
        with self._lock:
            return list(self._batches)

    @property
    def records(self) -> List[TransactionRecord]:
        """Every transaction received, in order."""
        return [record for batch in self.batches for record in batch.records]

    def metrics(self) -> Dict[MetricKey, MetricStats]:
        """The metrics of every batch, merged per key."""
        merged: Dict[MetricKey, MetricStats] = {}
        for batch in self.batches:
            for key, stats in batch.metrics.items():
                mine = merged.get(key)
                merged[key] = stats if mine is None else mine.merged(stats)
        return merged

    def drops(self) -> Dict[str, int]:
        """The drop counts of every batch, summed per reason."""
        totals: Dict[str, int] = {}
        for batch in self.batches:
            for drop in batch.drops:
                totals[drop.reason] = totals.get(drop.reason, 0) + drop.dropped
        return totals

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` records arrived; True if they did in time."""
        with self._changed:
            return self._changed.wait_for(
                lambda: sum(len(b.records) for b in self._batches) >= count, timeout
            )

    def clear(self) -> None:
        """Forget everything received."""
        with self._lock:
            self._batches.clear()
