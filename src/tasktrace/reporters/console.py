"""A reporter that prints one readable line per transaction on stderr, for development.

Example lines::

    tasktrace: billing-worker Function/jobs:send_invoices 12.3 ms ok
    tasktrace: billing-worker Function/jobs:charge 3.1 ms ERROR builtins:ValueError: bad card
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, List, Optional

from tasktrace._sanitize import clean
from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch, ExportResult

if TYPE_CHECKING:
    from tasktrace.config import Settings

__all__ = ["ConsoleReporter", "format_line"]


def format_line(record: TransactionRecord) -> str:
    """The console line for ``record`` (no trailing newline; messages kept to one line).

    Everything the program supplied (app, group, name, error type and message) goes
    through :func:`tasktrace._sanitize.clean`: the line never controls the terminal.
    """
    error = record.error
    if error is None:
        outcome = "ok"
    else:
        # Whitespace runs (newlines included) become one space, then whatever control
        # characters are left (ESC, CR, BEL, bidi overrides) are shown as escapes.
        message = clean(" ".join(error.message.split()))
        if len(message) > 200:
            message = message[:197] + "..."
        kind = clean(error.type)
        outcome = f"ERROR {kind}: {message}" if message else f"ERROR {kind}"
    return (
        f"tasktrace: {clean(record.app)} {clean(record.group)}/{clean(record.name)} "
        f"{record.duration * 1000.0:.1f} ms {outcome}"
    )


class ConsoleReporter:
    """Writes :func:`format_line` for each transaction to ``stream`` (default: stderr).

    Args:
        settings: Ignored.
        stream: Where to write; None means whatever ``sys.stderr`` is at export time (so
            redirection and test capture work). Never stdout by default: the program owns it.
    """

    name = "console"

    def __init__(self, settings: Optional[Settings] = None, *, stream: Optional[IO[str]] = None):
        self._stream = stream

    def export(self, batch: Batch) -> ExportResult:
        """Write the batch's lines in one write call."""
        if not batch.records:
            return ExportResult(True)
        lines: List[str] = [format_line(record) for record in batch.records]
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # closed or broken stream
            return ExportResult(False, dropped=len(lines), message=f"cannot write to stderr: {exc}")
        return ExportResult(True, exported=len(lines))

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        """Nothing is held back."""
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Nothing to release."""
