"""``tasktrace-admin prune``: apply retention, roll-ups and the size limit to the store now,
and say what was removed.

The store is found as ``report`` finds it (``--db``, ``TASKTRACE_DB``, the config's
``[reporter] path``, the default). Retention and ``max_size`` come from the config (and
their variables), ``--older-than`` overriding retention for this run. The sqlite reporter
does the same work in the background, a few milliseconds per harvest; this command does
all of it at once, and converts a store made by an older tasktrace to incremental
auto-vacuum (one ``VACUUM``), so that its file can shrink from then on.

Exit status: 0 when done (the summary on stdout); 1 when there is no store at that path;
2 for a bad ``--older-than`` or a file that cannot be a store, with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prune`` options to ``parser``."""
    from tasktrace.admin.report import add_db_argument

    add_db_argument(parser)
    parser.add_argument(
        "--older-than",
        metavar="AGE",
        help="delete what is older than AGE, e.g. 12h, 30d (default: the config's "
        "reporter.retention, 7d)",
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def run(args: argparse.Namespace) -> int:
    """Run ``prune``; returns the exit status (see the module docstring)."""
    import sqlite3

    from tasktrace import store
    from tasktrace.admin.report import _db_path
    from tasktrace.config import ReporterSettings
    from tasktrace.exceptions import TaskTraceError

    reporter = ReporterSettings()
    try:
        from tasktrace.config import load

        reporter = load().reporter
    except Exception:  # noqa: BLE001 - a broken config must not stop a prune: the defaults
        pass
    retention = reporter.retention
    if args.older_than:
        try:
            retention = store.parse_since(args.older_than)
        except ValueError as exc:
            sys.stderr.write(f"tasktrace-admin prune: --older-than: {exc}\n")
            return 2
    path = _db_path(args.db)
    if not os.path.lexists(path):
        sys.stderr.write(f"tasktrace-admin prune: no tasktrace store at {path}\n")
        return 1
    converted: Optional[int] = None
    try:
        conn = store.connect(path)
        try:
            report = store.prune(conn, retention=retention, max_size=reporter.max_size)
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                converted = store.vacuum_into_incremental(conn)
            size = store.file_bytes(conn)
        finally:
            conn.close()
    except (sqlite3.Error, TaskTraceError, OSError) as exc:
        sys.stderr.write(f"tasktrace-admin prune: cannot prune {path}: {exc}\n")
        return 2
    reclaimed = report.bytes_reclaimed + (converted or 0)
    lines = [
        f"pruned {path} (retention {args.older_than or _age(retention)}, "
        f"max_size {_size(reporter.max_size)}):",
        f"  removed {report.transactions:,} transactions ({report.blocks:,} blocks) and "
        f"{report.windows:,} metrics windows",
        f"  rolled up {report.rolled_up:,} metrics windows into minutes and hours",
        f"  reclaimed {_size(reclaimed)}; the file is {_size(size)}",
    ]
    if report.early_transactions or report.early_calls:
        lines.append(
            f"  to stay under max_size: {report.early_transactions:,} of those transactions "
            f"and the counts of {report.early_calls:,} calls went before their retention"
        )
    if converted is not None:
        lines.append("  converted the store to incremental auto-vacuum (it can shrink from now on)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _age(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale and seconds % scale == 0:
            return f"{int(seconds // scale)}{unit}"
    return f"{seconds:g}s"
