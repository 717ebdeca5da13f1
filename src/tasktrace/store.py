"""The SQLite store: schema, migrations, the writes of the sqlite reporter, and the queries
of ``tasktrace-admin report``.

One database file is shared by every process of a program (and by several programs): it
runs in WAL mode, so readers never block the writer, and each harvest is one ``BEGIN
IMMEDIATE`` transaction, so writers queue on SQLite's busy handler instead of failing.

Tables (schema version 1):

* ``transactions`` -- one row per kept transaction; ``trace_id``/``span_id`` as hex.
* ``segments`` -- the function traces of a transaction (``idx`` is the index within the
  transaction; ``parent`` is the parent's ``idx``, -1 for the transaction itself).
* ``errors`` -- every recorded error of a transaction.
* ``metrics`` -- exact aggregates per (app, name, group) per harvest window, including
  transactions whose rows were dropped; ``report`` takes calls, errors, totals and max
  from here.
* ``drops`` -- what was dropped, when, where and why.
* ``schema_version`` -- one row; :func:`migrate` brings older files up to date.

``sqlite3`` is imported by this module and by the sqlite reporter only, never by
``import tasktrace``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from tasktrace.environment import TASKTRACE_DB
from tasktrace.exceptions import TaskTraceError
from tasktrace.reporters.base import Batch

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DB_ENV_VAR",
    "REPORT_KEYS",
    "SCHEMA_VERSION",
    "connect",
    "default_db_path",
    "drop_totals",
    "has_data",
    "migrate",
    "parse_since",
    "percentile",
    "report_rows",
    "resolve_db_path",
    "write_batches",
]

#: The newest schema this code writes and reads.
SCHEMA_VERSION = 1

#: How long a connection waits for another process's write lock by default.
BUSY_TIMEOUT_MS = 5000

#: The environment variable naming the database (also read by the config loader).
DB_ENV_VAR = TASKTRACE_DB

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


def default_db_path(environ: Optional[Mapping[str, str]] = None) -> str:
    """``$XDG_DATA_HOME/tasktrace/tasktrace.db``, else ``~/.local/share/tasktrace/tasktrace.db``.

    This is the path used when neither ``[reporter] path`` nor ``TASKTRACE_DB`` is set.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return os.path.abspath(os.path.expanduser(os.path.join(base, "tasktrace", "tasktrace.db")))


def resolve_db_path(path: Optional[str], environ: Optional[Mapping[str, str]] = None) -> str:
    """``path`` (``~`` expanded, made absolute), else ``$TASKTRACE_DB``, else the default."""
    env = os.environ if environ is None else environ
    chosen = path or env.get(DB_ENV_VAR) or default_db_path(env)
    return os.path.abspath(os.path.expanduser(chosen))


# -- schema --------------------------------------------------------------------------------

_V1 = """
CREATE TABLE IF NOT EXISTS transactions (
    id            INTEGER PRIMARY KEY,
    app           TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    grp           TEXT    NOT NULL,
    background    INTEGER NOT NULL,
    start         REAL    NOT NULL,  -- epoch seconds
    duration      REAL    NOT NULL,  -- seconds
    exclusive     REAL    NOT NULL,
    cpu_time      REAL,
    pid           INTEGER NOT NULL,
    thread_id     INTEGER NOT NULL,
    trace_id      TEXT    NOT NULL,  -- 32 hex digits
    span_id       TEXT    NOT NULL,  -- 16 hex digits
    error_type    TEXT,              -- the last error, if any
    error_message TEXT,
    attributes    TEXT               -- JSON object, NULL when there are none
);
CREATE INDEX IF NOT EXISTS transactions_by_key ON transactions (app, grp, name, start);
CREATE TABLE IF NOT EXISTS segments (
    transaction_id INTEGER NOT NULL,
    idx            INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    grp            TEXT    NOT NULL,
    start          REAL    NOT NULL,  -- seconds after the transaction's start
    duration       REAL    NOT NULL,
    parent         INTEGER NOT NULL,  -- idx of the parent segment, -1: the transaction
    PRIMARY KEY (transaction_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS errors (
    transaction_id INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    traceback      TEXT    NOT NULL,
    timestamp      REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS errors_by_transaction ON errors (transaction_id);
CREATE TABLE IF NOT EXISTS metrics (
    app          TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    grp          TEXT    NOT NULL,
    window_start REAL    NOT NULL,
    window_end   REAL    NOT NULL,
    count        INTEGER NOT NULL,
    errors       INTEGER NOT NULL,
    total        REAL    NOT NULL,
    min          REAL    NOT NULL,
    max          REAL    NOT NULL,
    sumsq        REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_key ON metrics (app, grp, name, window_end);
CREATE TABLE IF NOT EXISTS drops (
    time   REAL    NOT NULL,
    pid    INTEGER NOT NULL,
    app    TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    count  INTEGER NOT NULL
);
"""

#: ``_MIGRATIONS[n]`` brings a database from version n-1 to version n. Version 2 adds its
#: script here and bumps SCHEMA_VERSION; nothing else changes.
_MIGRATIONS: Dict[int, str] = {1: _V1}


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema of ``conn`` up to :data:`SCHEMA_VERSION`; returns the version.

    Runs in one ``BEGIN IMMEDIATE`` transaction, so concurrent processes opening a new
    file migrate it exactly once.

    Raises:
        TaskTraceError: the file was written by a newer tasktrace (schema version higher
            than this code knows).
        sqlite3.Error: the database is locked beyond the busy timeout, or not SQLite.
    """
    version = _read_version(conn)
    if version == SCHEMA_VERSION:
        return version  # the common case, without taking the write lock
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = _read_version(conn)
        if version > SCHEMA_VERSION:
            raise TaskTraceError(
                f"the tasktrace database has schema version {version}, newer than "
                f"{SCHEMA_VERSION} which this tasktrace understands: upgrade tasktrace"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _statements(_MIGRATIONS[target]):
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _statements(script: str) -> List[str]:
    """Split a migration script into statements (they contain no ';' in literals)."""
    lines = [re.sub(r"--.*$", "", line) for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _read_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no such table: a new file
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def connect(
    path: str,
    *,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    readonly: bool = False,
) -> sqlite3.Connection:
    """Open the store at ``path`` (creating it and its parent directories unless
    ``readonly``), in WAL mode, migrated to the current schema.

    The connection is in autocommit mode (``isolation_level=None``): callers issue
    ``BEGIN IMMEDIATE`` / ``COMMIT`` themselves, so one harvest is one transaction.

    Raises:
        FileNotFoundError: ``readonly`` and the file does not exist.
        sqlite3.Error, TaskTraceError: see :func:`migrate`.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if readonly:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        conn = sqlite3.connect(
            f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, timeout=0
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        return conn
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    try:
        # The busy timeout first, so that the journal-mode switch and the migration of a
        # brand-new file wait for other processes doing the same.
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL is durable across application crashes; only an OS crash or
        # power loss can lose the last transactions, and it spares an fsync per harvest.
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


# -- writes --------------------------------------------------------------------------------


def write_batches(conn: sqlite3.Connection, batches: Sequence[Batch]) -> int:
    """Write ``batches`` in one ``BEGIN IMMEDIATE`` transaction; returns the rows written
    to ``transactions``.

    Transaction ids are allocated here (``MAX(id) + 1 ...``, safe because the write lock
    is held), so segments and errors are inserted with ``executemany`` instead of a
    round trip per transaction.

    Raises:
        sqlite3.OperationalError: ``database is locked`` beyond the busy timeout, disk
            full, ... (nothing is written then).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM transactions").fetchone()
        next_id = int(row[0]) + 1
        tx_rows: List[Tuple[Any, ...]] = []
        seg_rows: List[Tuple[Any, ...]] = []
        err_rows: List[Tuple[Any, ...]] = []
        metric_rows: List[Tuple[Any, ...]] = []
        drop_rows: List[Tuple[Any, ...]] = []
        dumps = json.dumps
        for batch in batches:
            for record in batch.records:
                tx_id = next_id
                next_id += 1
                errors = record.errors
                last = errors[-1] if errors else None
                attributes = record.attributes
                tx_rows.append(
                    (
                        tx_id,
                        record.app,
                        record.name,
                        record.group,
                        1 if record.background else 0,
                        record.start,
                        record.duration,
                        record.exclusive,
                        record.cpu_time,
                        record.pid,
                        record.thread_id,
                        f"{record.trace_id:032x}",
                        f"{record.span_id:016x}",
                        None if last is None else last.type,
                        None if last is None else last.message,
                        dumps(dict(attributes), default=str) if attributes else None,
                    )
                )
                if record.segments:
                    seg_rows.extend(
                        (tx_id, idx, s.name, s.group, s.start, s.duration, s.parent)
                        for idx, s in enumerate(record.segments)
                    )
                if errors:
                    err_rows.extend(
                        (tx_id, e.type, e.message, e.traceback, e.timestamp) for e in errors
                    )
            for key, stats in batch.metrics.items():
                metric_rows.append(
                    (
                        key.app,
                        key.name,
                        key.group,
                        batch.window_start,
                        batch.window_end,
                        stats.calls,
                        stats.errors,
                        stats.total,
                        stats.min,
                        stats.max,
                        stats.sumsq,
                    )
                )
            drop_rows.extend(
                (batch.window_end, batch.pid, d.app, d.reason, d.dropped) for d in batch.drops
            )
        conn.executemany(
            "INSERT INTO transactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", tx_rows
        )
        if seg_rows:
            conn.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?,?)", seg_rows)
        if err_rows:
            conn.executemany("INSERT INTO errors VALUES (?,?,?,?,?)", err_rows)
        if metric_rows:
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?)", metric_rows)
        if drop_rows:
            conn.executemany("INSERT INTO drops VALUES (?,?,?,?,?)", drop_rows)
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # BEGIN itself failed: there is nothing to roll back
        raise
    return len(tx_rows)


# -- queries -------------------------------------------------------------------------------

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str) -> float:
    """Seconds in a ``--since`` value: ``45s``, ``30m``, ``2h`` or ``7d``.

    Raises:
        ValueError: the text is not a positive number followed by one of s, m, h, d.
    """
    match = _SINCE.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a number followed by s, m, h or d, "
            "e.g. 45s, 30m, 2h, 7d"
        )
    value = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be greater than zero")
    return value


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


def _filters(
    app: Optional[str],
    name_glob: Optional[str],
    time_column: str,
    since_seconds: Optional[float],
    now: float,
) -> Tuple[str, List[Any]]:
    clauses: List[str] = []
    params: List[Any] = []
    if app is not None:
        clauses.append("app = ?")
        params.append(app)
    if name_glob is not None:
        clauses.append("name GLOB ?")
        params.append(name_glob)
    if since_seconds is not None:
        clauses.append(f"{time_column} >= ?")
        params.append(now - since_seconds)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _key_of(row: Tuple[Any, ...]) -> Tuple[str, str, str]:
    return (row[0], row[1], row[2])


def has_data(db_path: str) -> bool:
    """True if ``db_path`` exists and holds at least one metrics row."""
    try:
        conn = connect(db_path, readonly=True)
    except (FileNotFoundError, sqlite3.Error):
        return False
    try:
        return conn.execute("SELECT 1 FROM metrics LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False
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
    stored ``transactions`` rows that started within the period; they are None for a key
    whose rows were all dropped. ``name_glob`` matches the task name with SQLite ``GLOB``
    (case-sensitive ``*``, ``?``, ``[...]``). Rows are sorted by total time, largest first.

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
        where, params = _filters(app, name_glob, "start", since_seconds, now)
        cursor = conn.execute(
            f"SELECT app, grp, name, duration FROM transactions{where} "
            "ORDER BY app, grp, name, duration",
            params,
        )
        durations: Dict[Tuple[str, str, str], List[float]] = {}
        for key, rows in itertools.groupby(cursor, key=_key_of):
            durations[key] = [row[3] for row in rows]
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
