"""What ``tasktrace-admin report`` asks of the store: rows per task, drop totals, the
``--since`` parser and percentiles."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import (
    Any,
    Dict,
    List,
    Optional,
    Tuple,
)

from tasktrace.environment import parse_duration
from tasktrace.store._reads import _filters, durations_by_key
from tasktrace.store._schema import connect, corrupt_store_error

#: The keys of every row :func:`report_rows` returns, in display order.
REPORT_KEYS = (
    "app",
    "name",
    "group",
    "calls",
    "errors",
    "p50_ms",
    "p95_ms",
    "max_ms",
    "total_ms",
)


# -- queries -------------------------------------------------------------------------------


def parse_since(text: str) -> float:
    """Seconds in a ``--since`` value: ``45s``, ``30m``, ``2h`` or ``7d``.

    Raises:
        ValueError: the text is not a positive number followed by one of s, m, h, d.
    """
    return parse_duration(text)


def percentile(sorted_values: Sequence[float], pct: float) -> Optional[float]:
    """The nearest-rank percentile of ascending ``sorted_values`` (None if empty).

    Nearest rank: the smallest value such that at least ``pct`` percent of the values
    are less than or equal to it, i.e. ``sorted_values[ceil(pct/100 * n) - 1]``. It is
    always one of the observed durations, never an interpolation between two.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(pct / 100.0 * n))
    return sorted_values[min(rank, n) - 1]


def has_data(db_path: str) -> bool:
    """True if ``db_path`` exists and holds at least one metrics row.

    Raises:
        StoreError: the file exists but cannot be a store (see :func:`connect`).
    """
    try:
        conn = connect(db_path, readonly=True)
    except (FileNotFoundError, sqlite3.Error):
        return False
    try:
        return conn.execute("SELECT 1 FROM metrics LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:  # no such table: a new, empty store
        return False
    except sqlite3.DatabaseError as exc:
        raise corrupt_store_error(db_path, exc) from exc
    finally:
        conn.close()


def report_rows(
    db_path: str,
    *,
    app: Optional[str] = None,
    since_seconds: Optional[float] = None,
    name_glob: Optional[str] = None,
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """Per (app, group, name): calls, errors, p50/p95/max and total milliseconds.

    ``calls``, ``errors``, ``total_ms`` and ``max_ms`` come from ``metrics``, which is
    exact (dropped transactions included); ``since_seconds`` keeps the harvest windows
    that ended within that many seconds, so the cut is as fine as ``harvest_interval``.
    ``p50_ms`` and ``p95_ms`` are nearest-rank percentiles (see :func:`percentile`) of the
    durations of the transactions stored with the same windows (:func:`durations_by_key`);
    they are None for a key none of whose transactions was stored. ``name_glob`` matches
    the task name with SQLite ``GLOB`` (case-sensitive ``*``, ``?``, ``[...]``). Rows are
    sorted by total time, largest first.

    Returns:
        A list of dicts with exactly the keys :data:`REPORT_KEYS`.

    Raises:
        FileNotFoundError: ``db_path`` does not exist.
        sqlite3.Error: the file is not a tasktrace database.
    """
    now = time.time() if now is None else now
    conn = connect(db_path, readonly=True)
    try:
        where, params = _filters(app, name_glob, "window_end", since_seconds, now)
        metrics = conn.execute(
            "SELECT app, grp, name, SUM(count), SUM(errors), SUM(total), MAX(max) "
            f"FROM metrics{where} GROUP BY app, grp, name",
            params,
        ).fetchall()
        durations = durations_by_key(
            conn, app=app, name_glob=name_glob, since_seconds=since_seconds, now=now
        )
    finally:
        conn.close()
    result: List[Dict[str, Any]] = []
    for app_name, group, name, calls, errors, total, longest in metrics:
        values = durations.get((app_name, group, name), [])
        p50 = percentile(values, 50)
        p95 = percentile(values, 95)
        result.append(
            {
                "app": app_name,
                "name": name,
                "group": group,
                "calls": int(calls),
                "errors": int(errors),
                "p50_ms": None if p50 is None else p50 * 1000.0,
                "p95_ms": None if p95 is None else p95 * 1000.0,
                "max_ms": float(longest) * 1000.0,
                "total_ms": float(total) * 1000.0,
            }
        )
    result.sort(key=lambda row: (-row["total_ms"], row["app"], row["group"], row["name"]))
    return result


def drop_totals(
    db_path: str,
    *,
    app: Optional[str] = None,
    since_seconds: Optional[float] = None,
    now: Optional[float] = None,
) -> Dict[str, int]:
    """Dropped transactions recorded in the store, summed per reason.

    Raises:
        FileNotFoundError: ``db_path`` does not exist.
    """
    now = time.time() if now is None else now
    conn = connect(db_path, readonly=True)
    try:
        where, params = _filters(app, None, "time", since_seconds, now)
        rows: Iterable[Tuple[str, int]] = conn.execute(
            f"SELECT reason, SUM(count) FROM drops{where} GROUP BY reason ORDER BY reason",
            params,
        ).fetchall()
        return {reason: int(total) for reason, total in rows}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
