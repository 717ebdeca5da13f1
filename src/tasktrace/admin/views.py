"""``tasktrace-admin errors``, ``traces`` and ``trace ID``: what happened, shown on a terminal.

The queries are :func:`tasktrace.store.error_groups`, :func:`~tasktrace.store.list_traces`
and :func:`~tasktrace.store.find_trace`; this module only formats what they return.
``--format json`` prints their objects as they are (SPEC section 6). The tables fit the
terminal's width (``shutil.get_terminal_size``: ``COLUMNS``, then the terminal, else 80
columns), cutting long text with "…"; every piece of text the program wrote (names,
messages, tracebacks, attribute keys and values) goes through
:func:`tasktrace._sanitize.clean`, so no control character or escape sequence reaches the
terminal.

Exit status: 0 when the store was read (also when nothing matched: a line on stderr says
so, JSON prints ``[]``); 1 when the store is missing or cannot be read, or ``trace`` finds
no trace, or more than one, for its ID, with one line on stderr; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from tasktrace._sanitize import clean, display_width, fit

__all__ = [
    "add_errors_arguments",
    "add_trace_arguments",
    "add_traces_arguments",
    "format_errors",
    "format_trace",
    "format_traces",
    "run_errors",
    "run_trace",
    "run_traces",
]

#: The width when neither ``COLUMNS`` nor a terminal says one.
DEFAULT_WIDTH = 80
#: Hex digits of a trace id shown in the tables (``trace`` takes 8 or more).
_SHORT_ID = 10


# -- arguments -----------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, filters: bool = True) -> None:
    """``--db`` and ``--format``, and with ``filters`` ``--app``, ``--since`` and ``--name``,
    as ``report`` has them."""
    from tasktrace.admin.report import (
        add_db_argument,
        add_filter_arguments,
        add_format_argument,
    )

    add_db_argument(parser)
    if filters:
        add_filter_arguments(parser)
    add_format_argument(parser)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: it must be at least 1")
    return value


def add_errors_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``errors`` options to ``parser``."""
    from tasktrace.store import DEFAULT_LIMIT

    _common(parser)
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N groups, the latest first (default: {DEFAULT_LIMIT})",
    )
    parser.add_argument(
        "--tracebacks",
        action="store_true",
        help="after the table, the latest traceback of each group",
    )


def add_traces_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``traces`` options to ``parser``."""
    from tasktrace.store import DEFAULT_LIMIT

    _common(parser)
    parser.add_argument("--errors", action="store_true", help="only transactions with an error")
    parser.add_argument("--slowest", action="store_true", help="longest first (default: newest)")
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N transactions (default: {DEFAULT_LIMIT})",
    )


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``trace`` options to ``parser``."""
    _common(parser, filters=False)
    parser.add_argument(
        "id", metavar="ID", help="a trace id: 32 hex digits, or a unique prefix of 8 or more"
    )


# -- tables --------------------------------------------------------------------------------


def _width() -> int:
    return max(40, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def _table(
    headings: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[bool],
    shrink: Sequence[Tuple[int, int]],
    width: int,
) -> List[str]:
    """The lines of ``rows`` of safe text under ``headings``, aligned, at most ``width``
    cells wide when the columns of ``shrink`` ((index, fewest cells), the first given
    shrinking first) can be cut that far; cut text ends with "…"."""
    widths = [
        max([display_width(heading)] + [display_width(row[i]) for row in rows])
        for i, heading in enumerate(headings)
    ]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for index, fewest in shrink:
        if excess <= 0:
            break
        cut = min(excess, max(0, widths[index] - max(fewest, display_width(headings[index]))))
        widths[index] -= cut
        excess -= cut
    lines = []
    for row in [list(headings), *rows]:
        parts = [
            fit(text, cells, right=align, limit=cells)
            for text, cells, align in zip(row, widths, right)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def _when(rfc3339: str) -> str:
    """``2026-12-01T21:54:57.785Z`` as ``2026-12-01 21:54:57`` (UTC, to the second)."""
    return rfc3339[:19].replace("T", " ")


def _short_when(rfc3339: str) -> str:
    """``2026-12-01T21:54:57.785Z`` as ``12-01 21:54:57`` (UTC, to the second)."""
    return rfc3339[5:19].replace("T", " ")


def _ms(value: float) -> str:
    return f"{value:,.3f}" if value < 1 else f"{value:,.1f}"


def _type(error_type: str) -> str:
    """An error type for a table: ``builtins:`` is left out (``ValueError``)."""
    return error_type[len("builtins:") :] if error_type.startswith("builtins:") else error_type


def format_errors(
    groups: Sequence[Dict[str, Any]], *, width: int = DEFAULT_WIDTH, tracebacks: bool = False
) -> str:
    """Error groups (from :func:`tasktrace.store.error_groups`) as a table ``width`` cells
    wide, a group's error type and message on the line under its row, then with
    ``tracebacks`` each group's latest traceback."""
    rows = [
        [
            f"{group['count']:,}",
            _when(group["last_seen"]),
            clean(group["app"]),
            clean(group["name"]),
            group["trace_id"][:_SHORT_ID],
        ]
        for group in groups
    ]
    lines = _table(
        ("COUNT", "LAST SEEN (UTC)", "APP", "NAME", "TRACE"),
        rows,
        right=(True, False, False, False, False),
        shrink=((3, 16), (2, 8)),
        width=width,
    )
    # The message lines up under LAST SEEN.
    indent = " " * lines[0].index("LAST SEEN")
    out = [lines[0]]
    for line, group in zip(lines[1:], groups):
        error = clean(f"{_type(group['type'])}: {group['message']}")
        out += [line, indent + fit(error, 0, limit=max(8, width - len(indent)))]
    text = "\n".join(out) + "\n"
    if tracebacks:
        for group in groups:
            heading = f"{group['app']} {group['name']}: {group['type']}: {group['message']}"
            text += "\n" + fit(clean(heading), 0, limit=width) + "\n"
            text += f"  {group['count']:,} since {_when(group['first_seen'])}, latest "
            text += f"{_when(group['last_seen'])}\n  in trace {group['trace_id']}:\n"
            text += "".join(f"  {line}\n" for line in _lines(group["traceback"], width - 2))
    return text


def format_traces(transactions: Sequence[Dict[str, Any]], *, width: int = DEFAULT_WIDTH) -> str:
    """Transactions (from :func:`tasktrace.store.list_traces`) as a table ``width`` cells
    wide."""
    rows = [
        [
            _short_when(txn["start"]),
            _ms(txn["duration_ms"]),
            clean(txn["app"]),
            clean(txn["name"]),
            "-" if txn["error"] is None else clean(_type(txn["error"])),
            f"{txn['segments']:,}",
            txn["trace_id"][:_SHORT_ID],
        ]
        for txn in transactions
    ]
    headings = ["START (UTC)", "MS", "APP", "NAME", "ERROR", "SEGS", "TRACE"]
    right = [False, True, False, False, False, True, False]
    shrink = [(2, 8), (4, 10), (3, 12)]
    natural = sum(
        max([len(h)] + [display_width(r[i]) for r in rows]) for i, h in enumerate(headings)
    )
    if len({txn["app"] for txn in transactions}) == 1 and natural + 12 > width:
        # One app (the usual case, or --app): its column would only take room from the
        # names, so it is left out when the table would not fit.
        del headings[2], right[2]
        for row in rows:
            del row[2]
        shrink = [(3, 10), (2, 12)]
    lines = _table(headings, rows, right=right, shrink=shrink, width=width)
    return "\n".join(lines) + "\n"


def _lines(text: str, width: int) -> List[str]:
    """Multi-line program text as safe lines, each cut to ``width`` cells."""
    # Split on newlines only: a carriage return or form feed inside a line is shown as an
    # escape (as splitlines() would hide that it was there).
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    return [fit(clean(line), 0, limit=max(8, width)) for line in lines]


def _bar_chars() -> Tuple[str, str]:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    return ("\u2588", "\u00b7") if encoding in ("utf8", "utf8sig") else ("#", ".")


def format_trace(trace: Dict[str, Any], *, width: int = DEFAULT_WIDTH) -> str:
    """One trace (from :func:`tasktrace.store.find_trace`) as a tree of its transactions,
    each with its header, attributes, error and a waterfall of its function traces, at
    most ``width`` cells wide. A transaction whose ``parent_span_id`` is the span of
    another in the trace is drawn under it, indented."""
    transactions = trace["transactions"]
    spans = {txn["span_id"] for txn in transactions}
    children: Dict[Optional[str], List[Dict[str, Any]]] = {}
    for txn in transactions:  # in start order, so siblings are too
        parent = txn["parent_span_id"]
        children.setdefault(parent if parent in spans else None, []).append(txn)
    count = len(transactions)
    out = [f"trace {trace['trace_id']}: {count} transaction{'s' if count != 1 else ''}"]

    drawn: Set[int] = set()

    def draw(txn: Dict[str, Any], depth: int) -> None:
        drawn.add(id(txn))
        out.extend(_transaction_lines(txn, "    " * depth, width))
        for child in children.get(txn["span_id"], []):
            if id(child) not in drawn:  # ids a program chose may form a loop
                draw(child, depth + 1)

    for root in children.get(None, []):
        draw(root, 0)
    for txn in transactions:  # in a loop of parents, none is a root: drawn as roots
        if id(txn) not in drawn:
            draw(txn, 0)
    return "\n".join(out) + "\n"


def _transaction_lines(txn: Dict[str, Any], indent: str, width: int) -> List[str]:
    inner = max(20, width - display_width(indent))

    def cut(text: str, extra: int = 0) -> str:
        return indent + fit(text, 0, limit=max(8, inner - extra))

    host = "-" if txn["host"] is None else clean(txn["host"])
    lines = [
        "",
        cut(f"{clean(txn['app'])}  {clean(txn['name'])}  [{clean(txn['group'])}]"),
        cut(
            f"  start {txn['start']}  duration {_ms(txn['duration_ms'])} ms  exclusive "
            f"{_ms(txn['exclusive_ms'])} ms"
        ),
        cut(f"  pid {txn['pid']}  host {host}  span {txn['span_id']}"),
    ]
    if txn["parent_span_id"] is not None:
        lines.append(cut(f"  parent span {txn['parent_span_id']}"))
    attributes = txn["attributes"]
    if attributes:
        lines.append(cut("  attributes:"))
        lines.extend(
            cut(f"    {clean(key)} = {clean(value)}") for key, value in sorted(attributes.items())
        )
    error = txn["error"]
    if error is not None:
        lines.append(cut(f"  error: {clean(error['type'])}: {clean(error['message'])}"))
        lines.extend(indent + "    " + line for line in _lines(error["traceback"], inner - 4))
    segments = txn["segments"]
    if segments:
        lines.append(cut("  function traces:"))
        lines.extend(indent + line for line in _waterfall(segments, txn["duration_ms"], inner))
    return lines


def _waterfall(segments: Sequence[Dict[str, Any]], total_ms: float, width: int) -> List[str]:
    """A line per segment: its name indented by depth, a bar whose offset and length are
    its start and duration scaled to the transaction's, and its duration in ms."""
    depth: List[int] = []
    for segment in segments:
        parent = segment["parent"]
        depth.append(0 if parent is None else depth[parent] + 1)
    durations = [_ms(segment["duration_ms"]) for segment in segments]
    number = max(map(len, durations))
    labels = [
        "    " + "  " * level + clean(segment["name"]) for segment, level in zip(segments, depth)
    ]
    # Half the room for the bars (at least 10 cells), the rest for the names.
    bars = max(10, (width - number - 8) // 2)
    label_width = min(max(map(display_width, labels)), width - number - bars - 8)
    full, empty = _bar_chars()
    scale = bars / total_ms if total_ms > 0 else 0.0
    lines = []
    for label, segment, duration in zip(labels, segments, durations):
        offset = min(bars - 1, int(segment["start_offset_ms"] * scale))
        length = max(1, min(bars - offset, round(segment["duration_ms"] * scale)))
        bar = empty * offset + full * length + empty * (bars - offset - length)
        name = fit(label, label_width, limit=label_width)
        lines.append(f"{name}  |{bar}| {duration:>{number}} ms")
    return lines


# -- running -------------------------------------------------------------------------------


def _open(command: str, db: Optional[str]) -> Tuple[Any, str]:
    """The store, opened read-only, and its path; or (None, path) once a line on stderr
    has said why it cannot be read."""
    import sqlite3

    from tasktrace import store
    from tasktrace.admin.report import _db_path
    from tasktrace.exceptions import TaskTraceError

    path = _db_path(db)
    try:
        return store.connect(path, readonly=True), path
    except FileNotFoundError:
        sys.stderr.write(
            f"tasktrace-admin {command}: no tasktrace store at {path}: run a program under "
            "tasktrace-admin run-program first, or give --db\n"
        )
    except (TaskTraceError, sqlite3.Error, OSError) as exc:
        sys.stderr.write(f"tasktrace-admin {command}: cannot read {path}: {exc}\n")
    return None, path


def _since(command: str, text: Optional[str]) -> Tuple[bool, Optional[float]]:
    from tasktrace.store import parse_since

    if not text:
        return True, None
    try:
        return True, parse_since(text)
    except ValueError as exc:
        sys.stderr.write(f"tasktrace-admin {command}: --since: {exc}\n")
        return False, None


def _query(
    command: str, args: argparse.Namespace, ask: Callable[[Any], Any]
) -> Tuple[int, Any, str]:
    """(status, result, path): ``ask(conn)`` on the store of ``args.db``; a status other
    than 0 has been explained on stderr."""
    import sqlite3

    from tasktrace import store

    conn, path = _open(command, args.db)
    if conn is None:
        return 1, None, path
    try:
        return 0, ask(conn), path
    except store.TraceLookupError as exc:
        sys.stderr.write(f"tasktrace-admin {command}: {clean(exc)}\n")
        return 1, None, path
    except sqlite3.OperationalError as exc:  # e.g. locked past the busy timeout
        sys.stderr.write(f"tasktrace-admin {command}: cannot read {path}: {exc}\n")
        return 1, None, path
    except sqlite3.DatabaseError as exc:
        sys.stderr.write(f"tasktrace-admin {command}: {store.corrupt_store_error(path, exc)}\n")
        return 1, None, path
    finally:
        conn.close()


def _json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def run_errors(args: argparse.Namespace) -> int:
    """Run ``errors``; returns the exit status (see the module docstring)."""
    from tasktrace import store

    ok, since = _since("errors", args.since)
    if not ok:
        return 2
    status, groups, path = _query(
        "errors",
        args,
        lambda conn: store.error_groups(
            conn, app=args.app, name_glob=args.name, since_seconds=since, limit=args.limit
        ),
    )
    if status:
        return status
    if args.format == "json":
        _json(groups)
    elif not groups:
        filtered = args.app is not None or args.name is not None or since is not None
        sys.stderr.write(f"no errors stored in {path}{' match the filters' if filtered else ''}\n")
    else:
        sys.stdout.write(format_errors(groups, width=_width(), tracebacks=args.tracebacks))
    return 0


def run_traces(args: argparse.Namespace) -> int:
    """Run ``traces``; returns the exit status (see the module docstring)."""
    from tasktrace import store

    ok, since = _since("traces", args.since)
    if not ok:
        return 2
    status, transactions, path = _query(
        "traces",
        args,
        lambda conn: store.list_traces(
            conn,
            app=args.app,
            name_glob=args.name,
            since_seconds=since,
            errors_only=args.errors,
            slowest=args.slowest,
            limit=args.limit,
        ),
    )
    if status:
        return status
    if args.format == "json":
        _json(transactions)
    elif not transactions:
        sys.stderr.write(f"no stored transactions in {path} match\n")
    else:
        sys.stdout.write(format_traces(transactions, width=_width()))
    return 0


def run_trace(args: argparse.Namespace) -> int:
    """Run ``trace ID``; returns the exit status (see the module docstring)."""
    from tasktrace import store

    status, trace, _ = _query("trace", args, lambda conn: store.find_trace(conn, args.id))
    if status:
        return status
    if args.format == "json":
        _json(trace)
    else:
        sys.stdout.write(format_trace(trace, width=_width()))
    return 0
