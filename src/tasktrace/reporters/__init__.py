"""Reporters: how finished transactions leave the process.

``base`` holds the protocol every reporter follows; ``registry`` builds the configured ones
by name (built-ins and plugins from the ``tasktrace.reporters`` entry-point group). The
built-ins live one per module and import their heavy dependencies (``sqlite3``, ``httpx``)
only when they are created.
"""

from __future__ import annotations

from tasktrace.reporters.base import (
    Batch,
    DropCount,
    ExportResult,
    MetricKey,
    MetricStats,
    Reporter,
    ReporterFactory,
)

__all__ = [
    "Batch",
    "DropCount",
    "ExportResult",
    "MetricKey",
    "MetricStats",
    "Reporter",
    "ReporterFactory",
]
