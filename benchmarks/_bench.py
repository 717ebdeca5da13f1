"""What the per-call benchmarks share: a recorder whose reporter discards what it is given,
and the table they print (medians, and overheads against a baseline of the same run)."""

from __future__ import annotations

from typing import Dict, Iterable, Optional

from tasktrace._state import STATE
from tasktrace.config import Settings
from tasktrace.recorder import HarvestRecorder
from tasktrace.reporters.base import Batch, ExportResult


class DiscardReporter:
    """Takes every batch and keeps nothing."""

    name = "discard"

    def export(self, batch: Batch) -> ExportResult:
        return ExportResult(True, exported=len(batch.records))

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        pass


def discarding_recorder() -> HarvestRecorder:
    """Install the default recorder (bounded buffer, exact aggregates, the harvest thread)
    with a reporter that discards: the figures include the recorder's work, garbage
    collection and the harvest thread's share of the GIL, but no I/O."""
    recorder = HarvestRecorder(
        Settings(), reporters=[DiscardReporter()], install_process_hooks=False
    )
    STATE.set_recorder(recorder)
    return recorder


def print_rows(medians: Dict[str, float], labels: Iterable[str], base: str) -> None:
    """One line per label: its median and its overhead over the median of ``base``."""
    for label in labels:
        value = medians[label]
        print(f"{label:40s} {value:9.0f} {value - medians[base]:9.0f}")


def print_header(unit: str) -> None:
    """The column titles of :func:`print_rows`."""
    print(f"{'variant':40s} {'ns/' + unit:>9s} {'overhead':>9s}")
