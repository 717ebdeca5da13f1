"""What ``tasktrace-admin errors``, ``traces`` and ``trace`` ask of the store: pure queries
that take an open connection and filters and return JSON-ready objects (SPEC section 6),
for the terminal views and the dashboard alike.

They are written to answer without a scan on a big store: error groups come from
``errors`` (one row per recorded error) joined to their blocks; ``traces`` walks blocks
newest first (``transaction_blocks_by_last_start``) or longest first
(``transaction_blocks_by_max_duration``) and stops as soon as no further block can hold
one of the ``limit`` answers; ``trace`` finds the blocks holding a trace id through
``trace_index`` (the first 4 bytes of every trace id), then decodes only those blocks.
"""

from __future__ import annotations

import heapq
import math
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from tasktrace.records import TransactionRecord
from tasktrace.store._reads import _DECODED_COLUMNS, _column, _decode_block, _filters

#: The keys of every object :func:`error_groups` returns, in display order.
ERROR_KEYS = (
    "app",
    "name",
    "type",
    "message",
    "count",
    "first_seen",
    "last_seen",
    "trace_id",
    "traceback",
)
#: The keys of every object :func:`list_traces` returns.
TRACES_KEYS = (
    "trace_id",
    "span_id",
    "app",
    "name",
    "group",
    "start",
    "duration_ms",
    "error",
    "segments",
)
#: The default ``limit`` of :func:`error_groups` and :func:`list_traces`.
DEFAULT_LIMIT = 20
#: The fewest hex digits a trace id prefix may have.
MIN_PREFIX = 8


class TraceLookupError(LookupError):
    """``trace ID`` found no trace, or more than one, or ``ID`` is not a trace id (prefix);
    ``str()`` says which, naming the candidates of an ambiguous prefix."""

    def __init__(self, message: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(message)
        #: The trace ids an ambiguous prefix matches (at most :data:`_MAX_CANDIDATES`).
        self.candidates = tuple(candidates)


def rfc3339(epoch: float) -> str:
    """``epoch`` seconds as an RFC 3339 UTC time to the millisecond: ``2026-12-01T21:54:57.785Z``."""
    millis = math.floor(epoch * 1000.0)
    moment = datetime.fromtimestamp(millis // 1000, timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def _where(
    clauses: List[str],
    params: List[Any],
    app: Optional[str],
    name_glob: Optional[str],
    prefix: str = "b.",
) -> None:
    # The unary + keeps SQLite from choosing the (app, grp, name) index for these terms
    # over the index that gives the walk its order: a walk in order stops early, a
    # filtered scan would first sort every block of the app.
    if app is not None:
        clauses.append(f"+{prefix}app = ?")
        params.append(app)
    if name_glob is not None:
        clauses.append(f"+{prefix}name GLOB ?")
        params.append(name_glob)


def error_groups(
    conn: sqlite3.Connection,
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    since_seconds: Optional[float] = None,
    limit: Optional[int] = DEFAULT_LIMIT,
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """Stored errors grouped by (app, task name, error type, message), the group with the
    latest error first.

    ``count`` counts the stored error rows of the group (every recorded error of every
    stored transaction); ``first_seen`` and ``last_seen`` are the times of its first and
    latest error; ``trace_id``, ``span_id``, ``group`` and ``traceback`` are those of the
    latest. ``since_seconds`` keeps errors recorded at most that long before ``now``;
    ``name_glob`` matches the task name with SQLite ``GLOB``; ``limit`` None: every group.

    Returns:
        A list of dicts with the keys :data:`ERROR_KEYS` and ``group`` and ``span_id``.
    """
    now = time.time() if now is None else now
    where, params = _filters(app, name_glob, "timestamp", since_seconds, now)
    # Grouped in the order of errors_by_group, which holds every column read: no sort
    # and no table row is read until the groups are known.
    groups = conn.execute(
        "SELECT app, name, type, message, COUNT(*), MIN(timestamp), MAX(timestamp) AS latest "
        f"FROM errors{where} GROUP BY app, name, type, message "
        "ORDER BY latest DESC, app, name, type, message"
        + ("" if limit is None else f" LIMIT {int(limit)}"),
        params,
    ).fetchall()
    result = []
    for app_name, name, error_type, message, count, first, last in groups:
        # The latest occurrence, found through errors_by_group.
        latest = conn.execute(
            "SELECT b.grp, e.traceback, lower(hex(substr(b.trace_id, 16 * e.txn + 1, 16))), "
            "lower(hex(substr(b.span_id, 8 * e.txn + 1, 8))) FROM errors AS e "
            "JOIN transaction_blocks AS b ON b.id = e.block_id WHERE e.app = ? AND e.name = ? "
            "AND e.type = ? AND e.message = ? AND e.timestamp = ? "
            "ORDER BY e.rowid DESC LIMIT 1",
            (app_name, name, error_type, message, last),
        ).fetchone()
        group, traceback, trace_id, span_id = latest
        result.append(
            {
                "app": app_name,
                "name": name,
                "group": group,
                "type": error_type,
                "message": message,
                "count": int(count),
                "first_seen": rfc3339(first),
                "last_seen": rfc3339(last),
                "trace_id": trace_id,
                "span_id": span_id,
                "traceback": traceback,
            }
        )
    return result


def list_traces(
    conn: sqlite3.Connection,
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    since_seconds: Optional[float] = None,
    errors_only: bool = False,
    slowest: bool = False,
    limit: int = DEFAULT_LIMIT,
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """Stored transactions, newest first (by start), or longest first if ``slowest``.

    ``errors_only`` keeps transactions with a recorded error; ``since_seconds`` those that
    started at most that long before ``now``; ``name_glob`` matches the task name with
    SQLite ``GLOB``. Blocks are walked in the order of their latest start (or longest
    duration), and the walk ends once ``limit`` transactions are found that no further
    block can beat.

    Returns:
        A list of at most ``limit`` dicts with the keys :data:`TRACES_KEYS` and
        ``parent_span_id``; ``error`` is the type of the transaction's last error or None,
        ``segments`` how many function traces it has.
    """
    now = time.time() if now is None else now
    if limit <= 0:
        return []
    bound = "max_duration" if slowest else "last_start"
    clauses: List[str] = []
    params: List[Any] = []
    _where(clauses, params, app, name_glob)
    cut: Optional[float] = None
    early = True  # the walk may stop once no further block can beat the best found
    if since_seconds is not None:
        cut = now - since_seconds
        if slowest and _few_since(conn, cut):
            # A short window: every block of it is read (newest first), which costs less
            # than walking the longest of all time until enough fall inside the window.
            bound, early = "last_start", False
        # In the walk by duration, + keeps SQLite from reading the window by start
        # instead (and sorting all of it).
        clauses.append(f"{'+' if bound == 'max_duration' else ''}b.last_start >= ?")
        params.append(cut)
    if errors_only:
        clauses.append("EXISTS (SELECT 1 FROM errors AS e WHERE e.block_id = b.id)")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    cursor = conn.execute(
        f"SELECT b.id, b.{bound}, b.start, b.duration FROM transaction_blocks AS b{where} "
        f"ORDER BY b.{bound} DESC, b.id DESC",
        params,
    )
    # A min-heap of the best ``limit`` so far: (sort value, block id, index).
    best: List[Tuple[float, int, int]] = []
    for block_id, block_bound, start_blob, duration_blob in cursor:
        if early and len(best) == limit and block_bound < best[0][0]:
            break
        starts = _column("d", start_blob)
        values = _column("d", duration_blob) if slowest else starts
        if errors_only:
            indexes: Sequence[int] = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT txn FROM errors WHERE block_id = ?", (block_id,)
                )
            ]
        else:
            indexes = range(len(starts))
        for index in indexes:
            if cut is not None and starts[index] < cut:
                continue
            item = (values[index], block_id, index)
            if len(best) < limit:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
    cursor.close()
    chosen = sorted(best, reverse=True)
    records = _records_of(conn, {block_id for _, block_id, _ in chosen})
    result = []
    for _, block_id, index in chosen:
        record, _host = records[block_id][index]
        error = record.error
        result.append(
            {
                "trace_id": record.trace_id_hex,
                "span_id": record.span_id_hex,
                "parent_span_id": record.parent_span_id_hex,
                "app": record.app,
                "name": record.name,
                "group": record.group,
                "start": rfc3339(record.start),
                "duration_ms": record.duration * 1000.0,
                "error": None if error is None else error.type,
                "segments": len(record.segments),
            }
        )
    return result


#: ``traces --slowest --since`` reads every block of a window with fewer blocks than this.
_WINDOW_BLOCKS = 20_000


def _few_since(conn: sqlite3.Connection, cut: float) -> bool:
    """Whether fewer than :data:`_WINDOW_BLOCKS` blocks have a transaction from ``cut`` on
    (counted through ``transaction_blocks_by_last_start``, at most that many)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM transaction_blocks WHERE last_start >= ? LIMIT ?)",
        (cut, _WINDOW_BLOCKS),
    ).fetchone()
    return bool(row[0] < _WINDOW_BLOCKS)


def _records_of(
    conn: sqlite3.Connection, block_ids: Iterable[int]
) -> Dict[int, List[Tuple[TransactionRecord, Optional[str]]]]:
    """The decoded records of the blocks ``block_ids``, each with its block's host."""
    found: Dict[int, List[Tuple[TransactionRecord, Optional[str]]]] = {}
    for block_id in sorted(block_ids):
        row = conn.execute(
            f"SELECT {_DECODED_COLUMNS}, b.host FROM transaction_blocks AS b "
            "LEFT JOIN segment_blocks AS s ON s.block_id = b.id WHERE b.id = ?",
            (block_id,),
        ).fetchone()
        errors = conn.execute(
            "SELECT txn, type, message, traceback, timestamp FROM errors "
            "WHERE block_id = ? ORDER BY txn, rowid",
            (block_id,),
        )
        host = row[-1]
        found[block_id] = [(record, host) for record in _decode_block(row[:-1], errors)]
    return found


_HEX = re.compile(r"^[0-9a-fA-F]+$")
#: The most candidates an ambiguous prefix's message names.
_MAX_CANDIDATES = 10


def find_trace(conn: sqlite3.Connection, trace_id: str) -> Dict[str, Any]:
    """Every stored transaction of one trace, with its segments, errors and attributes.

    Args:
        conn: An open store.
        trace_id: 32 hex digits, or a prefix of at least :data:`MIN_PREFIX` that only one
            stored trace id has (case-insensitive).

    Returns:
        ``{"trace_id": ..., "transactions": [...]}``, the transactions ordered by start,
        each with ``span_id``, ``parent_span_id``, ``app``, ``name``, ``group``,
        ``start``, ``duration_ms``, ``exclusive_ms``, ``pid``, ``host``, ``attributes``,
        ``error`` (None or ``type``, ``message``, ``traceback`` of its last error) and
        ``segments`` (``name``, ``group``, ``start_offset_ms``, ``duration_ms``,
        ``parent``: the index of the parent segment or None).

    Raises:
        TraceLookupError: not hex, too short or too long, unknown, or ambiguous.
    """
    wanted = trace_id.strip().lower()
    if not _HEX.match(wanted) or len(wanted) > 32:
        raise TraceLookupError(
            f"{trace_id!r} is not a trace id: give its 32 hex digits or a prefix of at "
            f"least {MIN_PREFIX}"
        )
    if len(wanted) < MIN_PREFIX:
        raise TraceLookupError(
            f"trace id prefix {trace_id!r} is too short: give at least {MIN_PREFIX} hex digits"
        )
    matches: List[Tuple[TransactionRecord, Optional[str]]] = []
    for block_id in _blocks_with_prefix(conn, bytes.fromhex(wanted[:8])):
        for record, host in _records_of(conn, [block_id])[block_id]:
            if record.trace_id_hex.startswith(wanted):
                matches.append((record, host))
    ids = sorted({record.trace_id_hex for record, _ in matches})
    if not ids:
        raise TraceLookupError(f"no stored trace has the id {wanted}")
    if len(ids) > 1:
        shown = ", ".join(ids[:_MAX_CANDIDATES])
        more = f" and {len(ids) - _MAX_CANDIDATES} more" if len(ids) > _MAX_CANDIDATES else ""
        raise TraceLookupError(
            f"trace id prefix {wanted} is ambiguous: it matches {shown}{more}",
            ids[:_MAX_CANDIDATES],
        )
    matches.sort(key=lambda pair: (pair[0].start, pair[0].span_id))
    return {
        "trace_id": ids[0],
        "transactions": [_transaction(record, host) for record, host in matches],
    }


def _blocks_with_prefix(conn: sqlite3.Connection, needle: bytes) -> List[int]:
    """The ids of the blocks holding a trace id that begins with the 4 bytes ``needle``."""
    ranges: List[Tuple[int, int]] = []
    for first, last, prefixes in conn.execute(
        "SELECT first_block, last_block, prefixes FROM trace_index"
    ):
        position = prefixes.find(needle)
        while position >= 0:
            if position % 4 == 0:  # an id's prefix, not bytes across two of them
                ranges.append((first, last))
                break
            position = prefixes.find(needle, position + 1)
    found: List[int] = []
    for first, last in ranges:
        for block_id, trace_ids in conn.execute(
            "SELECT id, trace_id FROM transaction_blocks WHERE id BETWEEN ? AND ? "
            "AND instr(trace_id, ?) > 0",
            (first, last, needle),
        ):
            position = trace_ids.find(needle)
            while position >= 0:
                if position % 16 == 0:
                    found.append(block_id)
                    break
                position = trace_ids.find(needle, position + 1)
    return found


def _transaction(record: TransactionRecord, host: Optional[str]) -> Dict[str, Any]:
    error = record.error
    return {
        "span_id": record.span_id_hex,
        "parent_span_id": record.parent_span_id_hex,
        "app": record.app,
        "name": record.name,
        "group": record.group,
        "start": rfc3339(record.start),
        "duration_ms": record.duration * 1000.0,
        "exclusive_ms": record.exclusive * 1000.0,
        "pid": record.pid,
        "host": host,
        "attributes": dict(record.attributes),
        "error": None
        if error is None
        else {"type": error.type, "message": error.message, "traceback": error.traceback},
        "segments": [
            {
                "name": segment.name,
                "group": segment.group,
                "start_offset_ms": segment.start * 1000.0,
                "duration_ms": segment.duration * 1000.0,
                "parent": None if segment.parent < 0 else segment.parent,
            }
            for segment in record.segments
        ],
    }


__all__ = [
    "DEFAULT_LIMIT",
    "ERROR_KEYS",
    "MIN_PREFIX",
    "TRACES_KEYS",
    "TraceLookupError",
    "error_groups",
    "find_trace",
    "list_traces",
    "rfc3339",
]
