"""A reporter that appends one JSON object per transaction, one per line, to a file.

Each object has the :class:`~tasktrace.records.TransactionRecord` fields, with ``trace_id``
and ``span_id`` as lowercase hex, errors and segments as lists of objects, e.g.::

    {"app": "billing-worker", "name": "jobs:send_invoices", "group": "Function", ...,
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}

The file is opened in append mode for every batch and the batch is written with one
``write`` call, so several processes can share one file without interleaving lines.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, Optional

from tasktrace import _files
from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch, ExportResult

if TYPE_CHECKING:
    from tasktrace.config import Settings

__all__ = ["DEFAULT_JSONL_PATH", "JsonlReporter", "record_to_dict"]

#: The output file when ``[reporter] path`` is not set (relative to the working directory
#: at the time the reporter is created).
DEFAULT_JSONL_PATH = "tasktrace.jsonl"


def record_to_dict(record: TransactionRecord) -> Dict[str, Any]:
    """A JSON-ready dict of ``record``: its fields, ids as hex."""
    return {
        "app": record.app,
        "name": record.name,
        "group": record.group,
        "background": record.background,
        "start": record.start,
        "duration": record.duration,
        "exclusive": record.exclusive,
        "cpu_time": record.cpu_time,
        "pid": record.pid,
        "thread_id": record.thread_id,
        "errors": [error._asdict() for error in record.errors],
        "attributes": dict(record.attributes),
        "segments": [segment._asdict() for segment in record.segments],
        "trace_id": record.trace_id_hex,
        "span_id": record.span_id_hex,
        "parent_span_id": record.parent_span_id_hex,
        "dropped_segments": record.dropped_segments,
    }


def jsonl_path(settings: Settings) -> str:
    """Where the jsonl reporter writes for ``settings``.

    ``[reporter] path`` is shared with the sqlite reporter (``TASKTRACE_DB``); when both
    reporters are configured, the path names the database, so the lines go next to it
    with the suffix ``.jsonl`` instead of into it.
    """
    path = settings.reporter.path
    if not path:
        return os.path.abspath(DEFAULT_JSONL_PATH)
    path = os.path.abspath(os.path.expanduser(path))
    if "sqlite" in settings.reporter.types:
        path = os.path.splitext(path)[0] + ".jsonl"
    return path


class JsonlReporter:
    """Appends each transaction as a JSON line to ``path`` (see :func:`jsonl_path`).

    Args:
        settings: Supplies the path when ``path`` is not given.
        path: The output file; it (``0600``) and its parent directories (``0700``) are
            created on first use.
    """

    name = "jsonl"

    def __init__(self, settings: Optional[Settings] = None, *, path: Optional[str] = None):
        if path is None:
            path = os.path.abspath(DEFAULT_JSONL_PATH) if settings is None else jsonl_path(settings)
        self.path = path

    def export(self, batch: Batch) -> ExportResult:
        """Append the batch's lines with a single write."""
        if not batch.records:
            return ExportResult(True)
        try:
            data = "".join(
                json.dumps(record_to_dict(record), separators=(",", ":"), default=str) + "\n"
                for record in batch.records
            ).encode("utf-8")
            # Created 0600 in directories made 0700: lines hold messages and tracebacks.
            fd = _files.open_private(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)
        except (OSError, ValueError, TypeError) as exc:
            return ExportResult(
                False,
                dropped=len(batch.records),
                message=f"cannot append to {self.path}: {exc}",
            )
        return ExportResult(True, exported=len(batch.records))

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        """Every export is already written through."""
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """No file is kept open between exports."""
