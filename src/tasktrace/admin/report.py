"""``tasktrace-admin report``: per task, calls, errors, p50, p95, max and total time.

Every figure covers every call the store counted, stored as a row or not: p50 and p95 come
from the latency histograms of the metrics windows (within 0.55%, see
:func:`tasktrace.store.report_rows`).

The database is, in order: ``--db``, ``TASKTRACE_DB``, ``[reporter] path`` of the config
file found the usual way, then the default store path. Output goes to stdout (the table,
or ``--format json``: a list of objects with exactly the keys ``app``, ``name``,
``group``, ``calls``, ``errors``, ``p50_ms``, ``p95_ms``, ``max_ms``, ``total_ms``;
with ``--with-drops``, an object ``{"tasks": <that list>, "dropped": {reason: count}}``
holding the drop counts the table's note gives, for the same ``--app`` and ``--since``).

Exit status: 0 with data (also when the filters match nothing: an empty table says so on
stderr, JSON prints ``[]``); 1 when there is no data at all (the file is missing or holds
nothing yet), with one line on stderr saying how to get some; 2 for bad arguments or a
file that cannot be read as a store, with one line saying what is wrong (a directory, not
readable, not SQLite, corrupt or truncated, another program's database, a newer schema).
Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, Optional, Sequence

from tasktrace._sanitize import clean, display_width, fit

__all__ = [
    "add_arguments",
    "add_db_argument",
    "add_filter_arguments",
    "add_format_argument",
    "format_table",
    "run",
]

_COLUMNS = (
    # (key, heading, right-aligned, the most cells shown: longer text is cut with "…")
    ("app", "APP", False, 40),
    ("group", "GROUP", False, 30),
    ("name", "NAME", False, 100),
    ("calls", "CALLS", True, None),
    ("errors", "ERRORS", True, None),
    ("p50_ms", "P50 MS", True, None),
    ("p95_ms", "P95 MS", True, None),
    ("max_ms", "MAX MS", True, None),
    ("total_ms", "TOTAL MS", True, None),
)


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """``--db PATH``, as every command that reads the store takes it (see :func:`_db_path`)."""
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="the SQLite store (default: TASKTRACE_DB, the config's [reporter] path, "
        "or ~/.local/share/tasktrace/tasktrace.db)",
    )


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """``--app``, ``--since`` and ``--name``, as every read command takes them."""
    parser.add_argument("--app", metavar="NAME", help="only this application")
    parser.add_argument(
        "--since",
        metavar="AGE",
        help="only the last AGE, e.g. 45s, 30m, 2h, 7d (default: all data)",
    )
    parser.add_argument(
        "--name", metavar="GLOB", help="only task names matching GLOB (*, ?, [..]; case-sensitive)"
    )


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--format table|json``, as every read command takes it."""
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="a table for people (default) or JSON for programs",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` options to ``parser``."""
    add_db_argument(parser)
    add_filter_arguments(parser)
    add_format_argument(parser)
    parser.add_argument(
        "--with-drops",
        action="store_true",
        help='with --format json: an object {"tasks": [rows], "dropped": {reason: count}} '
        "instead of the list of rows (the table always notes drops)",
    )


def _db_path(explicit: Optional[str]) -> str:
    from tasktrace import store

    if explicit:
        return store.resolve_db_path(explicit)
    if os.environ.get(store.DB_ENV_VAR):
        return store.resolve_db_path(None)
    try:
        from tasktrace.config import load

        configured = load().reporter.path
    except Exception:  # a broken config must not stop a report of what is there  # noqa: BLE001
        configured = None
    return store.resolve_db_path(configured)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("_ms"):
        return f"{value:,.3f}" if value < 1 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    # A name the program chose: shown, never interpreted by the terminal.
    return clean(value)


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """``rows`` (from :func:`tasktrace.store.report_rows`) as an aligned text table.

    Text cells are made safe with :func:`tasktrace._sanitize.clean` (escape sequences,
    carriage returns and bidi overrides are shown as escapes), columns are aligned by
    terminal cells (wide characters take two), and over-long names are cut with "…".
    """
    cells = [[heading for _, heading, _, _ in _COLUMNS]]
    cells += [[_cell(key, row[key]) for key, _, _, _ in _COLUMNS] for row in rows]
    cells = [
        [fit(text, 0, limit=limit) for text, (_, _, _, limit) in zip(line, _COLUMNS)]
        for line in cells
    ]
    widths = [max(display_width(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = []
    for line in cells:
        parts = [
            fit(text, width, right=right)
            for text, width, (_, _, right, _) in zip(line, widths, _COLUMNS)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run ``report``; returns the exit status (see the module docstring)."""
    import sqlite3

    from tasktrace import store
    from tasktrace.exceptions import StoreError, TaskTraceError

    since: Optional[float] = None
    if args.since:
        try:
            since = store.parse_since(args.since)
        except ValueError as exc:
            sys.stderr.write(f"tasktrace-admin report: --since: {exc}\n")
            return 2
    path = _db_path(args.db)
    try:
        present = os.path.lexists(path) and store.has_data(path)
        if present:
            rows = store.report_rows(path, app=args.app, since_seconds=since, name_glob=args.name)
            drops = store.drop_totals(path, app=args.app, since_seconds=since)
    except StoreError as exc:  # says what is wrong with the file, and what to do
        sys.stderr.write(f"tasktrace-admin report: {exc}\n")
        return 2
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):  # e.g. locked past the busy timeout
            sys.stderr.write(f"tasktrace-admin report: cannot read {path}: {exc}\n")
        else:  # a page SQLite finds malformed, met while reading
            sys.stderr.write(f"tasktrace-admin report: {store.corrupt_store_error(path, exc)}\n")
        return 2
    except (sqlite3.Error, TaskTraceError, OSError) as exc:
        sys.stderr.write(f"tasktrace-admin report: cannot read {path}: {exc}\n")
        return 2
    if not present:
        sys.stderr.write(
            f"no tasktrace data in {path}: run a program under tasktrace-admin run-program first\n"
        )
        return 1
    if args.format == "json":
        document: Any = {"tasks": rows, "dropped": drops} if args.with_drops else rows
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    if not rows:
        sys.stderr.write(f"no tasks in {path} match the filters\n")
        return 0
    sys.stdout.write(format_table(rows))
    if drops:
        details = ", ".join(f"{reason}: {count:,}" for reason, count in drops.items())
        sys.stdout.write(
            f"\nnote: transactions were dropped ({details}); calls, errors, p50/p95, max "
            "and total include those dropped for a full buffer\n"
        )
    return 0
