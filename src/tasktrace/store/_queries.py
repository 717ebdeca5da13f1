"""What ``tasktrace-admin report`` asks of the store: rows per task, drop totals, the
``--since`` parser and percentiles."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import (
    Any,
    Dict,
    List,
    Optional,
    Tuple,
)

from tasktrace.environment import parse_duration
from tasktrace.histogram import Histogram, merge_encoded
from tasktrace.store._reads import _column, _filters, durations_by_key
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
    ``p50_ms`` and ``p95_ms`` cover every call too: they are nearest-rank percentiles
    (see :func:`percentile`) estimated from the merged latency histograms of the selected
    windows, within 0.55% (:mod:`tasktrace.histogram`), each clamped to the exact
    ``[min, max]`` of those windows. Windows written before schema version 3 have no
    histogram: their calls are represented by the durations of their stored
    transactions (:func:`durations_by_key`), as before, merged into the histogram of the
    newer windows when a key has both. A key with neither has None. ``name_glob`` matches
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
            "SELECT app, grp, name, SUM(count), SUM(errors), SUM(total), MIN(min), MAX(max), "
            "SUM(CASE WHEN histogram IS NULL THEN count ELSE 0 END), "
            "MAX(CASE WHEN histogram IS NULL THEN window_end END) "
            f"FROM metrics{where} GROUP BY app, grp, name",
            params,
        ).fetchall()
        histograms = _histograms_by_key(conn, where, params)
        # Only windows written before version 3 need their stored rows read.
        old = {(row[0], row[1], row[2]): row[9] for row in metrics if row[8]}
        durations = (
            durations_by_key(
                conn, app=app, name_glob=name_glob, since_seconds=since_seconds, now=now
            )
            if any(key not in histograms for key in old)
            else {}
        )
        for key, last_old_window in old.items():
            if key in histograms:  # both: the old windows' rows join the newer histogram
                histograms[key].record_many(
                    _old_durations(conn, key, last_old_window, since_seconds, now)
                )
    finally:
        conn.close()
    result: List[Dict[str, Any]] = []
    for app_name, group, name, calls, errors, total, shortest, longest, _, _ in metrics:
        key = (app_name, group, name)
        histogram = histograms.get(key)
        if histogram is not None:
            p50 = histogram.quantile(0.50, shortest, longest)
            p95 = histogram.quantile(0.95, shortest, longest)
        else:
            values = durations.get(key, [])
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


def _histograms_by_key(
    conn: sqlite3.Connection, where: str, params: Sequence[Any]
) -> Dict[Tuple[str, str, str], Histogram]:
    """The merged histograms of the selected windows, per (app, group, name)."""
    clause = f"{where} AND histogram IS NOT NULL" if where else " WHERE histogram IS NOT NULL"
    rows = conn.execute(
        f"SELECT app, grp, name, histogram FROM metrics{clause} ORDER BY app, grp, name",
        list(params),
    )
    found: Dict[Tuple[str, str, str], Histogram] = {}
    for key, group in groupby(rows, key=itemgetter(0, 1, 2)):
        merged = merge_encoded(map(itemgetter(3), group))
        if merged is not None:
            found[key] = merged
    return found


def _old_durations(
    conn: sqlite3.Connection,
    key: Tuple[str, str, str],
    until: float,
    since_seconds: Optional[float],
    now: float,
) -> List[float]:
    """The stored durations of ``key`` in windows that ended by ``until`` (those written
    before schema version 3) and within ``since_seconds``."""
    sql = (
        "SELECT duration FROM transaction_blocks WHERE app = ? AND grp = ? AND name = ? "
        "AND window_end <= ?"
    )
    params: List[Any] = [*key, until]
    if since_seconds is not None:
        sql += " AND window_end >= ?"
        params.append(now - since_seconds)
    values: List[float] = []
    for (blob,) in conn.execute(sql, params):
        values.extend(_column("d", blob))
    return values


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
