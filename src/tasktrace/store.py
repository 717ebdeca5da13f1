"""The SQLite store: schema, migrations, the writes of the sqlite reporter, and the reads
of ``tasktrace-admin report`` and :func:`read_transactions`.

One database file is shared by every process of a program (and by several programs): it
runs in WAL mode, so readers never block the writer, and each harvest is one ``BEGIN
IMMEDIATE`` transaction, so writers queue on SQLite's busy handler instead of failing.

Schema version 2 stores transactions *packed*: not a SQL row per transaction, but a row per
block of transactions that share (app, name, group, background, pid) and were written by
the same harvest -- one block per key and harvest, or more when a harvest holds more than
:data:`MAX_BLOCK_SIZE` of a key -- whose columns are binary arrays with one element per
transaction. Packing a transaction costs a few hundred nanoseconds, nearly all of it in C
(``zip``, ``array``, ``bytes.join``), where a SQL row of its own cost several microseconds;
that is what lets a busy worker store every transaction. Version 1 files (a row per
transaction) are migrated in place when first opened (see :func:`migrate`).

Tables:

* ``transaction_blocks`` -- one row per block. ``app``, ``name``, ``grp``, ``background``
  (0/1) and ``pid`` are shared by the block's transactions; ``window_start`` and
  ``window_end`` are the harvest window of the batch that wrote it (the same values as its
  ``metrics`` rows, so a ``--since`` cut is the same for both); ``count`` is the number of
  transactions, ``first_start`` and ``last_start`` the least and greatest ``start``. The
  arrays, element *i* being the block's *i*-th transaction (in the order recorded):

  ========================  ========================  ====================================
  column                    element                   meaning
  ========================  ========================  ====================================
  ``start``                 float64, little-endian    epoch seconds
  ``duration``              float64, little-endian    seconds
  ``exclusive``             float64, little-endian    seconds (duration less direct
                                                      children); the column is NULL
                                                      when it equals ``duration`` for
                                                      every transaction (no traces)
  ``cpu_time``              float64, little-endian    seconds; NaN where not measured;
                                                      the column is NULL when none was
  ``thread_id``             uint64, little-endian     a single element (8 bytes) when
                                                      one thread ran every transaction
  ``trace_id``              16 bytes, big-endian      ``lower(hex(substr(trace_id, 16*i+1,
                                                      16)))`` is the W3C trace id
  ``span_id``               8 bytes, big-endian       ``lower(hex(substr(span_id, 8*i+1,
                                                      8)))`` is the W3C span id
  ``dropped_segments``      uint32, little-endian     NULL when all are zero
  ========================  ========================  ====================================

  ``attributes`` is a JSON object from the index *i* (as a decimal string) to the custom
  attributes of transaction *i*, holding only the transactions that have any; NULL when
  none has.
* ``segment_blocks`` -- the function traces of a block (no row when none of its
  transactions has any): ``block_id`` is the block's ``id``, ``count`` the number of
  segments, ``names`` a JSON array of the distinct ``[name, group]`` pairs, and the arrays
  (little-endian) ``txn`` (uint32, the index of the segment's transaction in the block),
  ``name_idx`` (uint32, an index into ``names``), ``start`` (float64, seconds after its
  transaction's start), ``duration`` (float64) and ``parent`` (int32, the index of the
  parent among the same transaction's segments, -1 for the transaction itself). A
  transaction's segments are consecutive and in their original order, so a segment's index
  within its transaction is its position among them.
* ``errors`` -- one row per recorded error, in order: ``block_id``, ``txn`` (the index of
  the transaction in the block), ``type``, ``message``, ``traceback``, ``timestamp``.
* ``metrics`` -- exact aggregates per (app, name, group) per harvest window, including
  transactions that were not stored; ``report`` takes calls, errors, totals and max from
  here.
* ``drops`` -- what was dropped, when, where and why.
* ``schema_version`` -- one row; :func:`migrate` brings older files up to date.

:func:`read_transactions` decodes blocks back into
:class:`~tasktrace.records.TransactionRecord` objects; :func:`durations_by_key` decodes
only the durations, for percentiles.

``sqlite3`` is imported by this module and by the sqlite reporter only, never by
``import tasktrace``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import sys
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, compress, count, groupby, repeat
from operator import add, itemgetter, lshift, mul, or_
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Literal,
    NamedTuple,
    Optional,
    Protocol,
    Tuple,
    Union,
)
from urllib.parse import quote

from tasktrace import _files
from tasktrace.environment import TASKTRACE_DB
from tasktrace.exceptions import StoreError
from tasktrace.records import (
    EMPTY_ATTRIBUTES,
    DropCount,
    ErrorRecord,
    MetricKey,
    MetricStats,
    SegmentRecord,
    TransactionRecord,
)

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DB_ENV_VAR",
    "MAX_BLOCK_SIZE",
    "REPORT_KEYS",
    "SCHEMA_VERSION",
    "connect",
    "corrupt_store_error",
    "default_db_path",
    "drop_totals",
    "durations_by_key",
    "has_data",
    "migrate",
    "parse_since",
    "percentile",
    "read_transactions",
    "report_rows",
    "resolve_db_path",
    "write_batches",
]

#: The newest schema this code writes and reads.
SCHEMA_VERSION = 2

#: How long a connection waits for another process's write lock by default.
BUSY_TIMEOUT_MS = 5000

#: The environment variable naming the database (also read by the config loader).
DB_ENV_VAR = TASKTRACE_DB

#: The most transactions in one block. Packing a block transposes its records into
#: columns, then reads each column; a block this size stays in the CPU cache meanwhile (at
#: 65,536 packing costs a third more per transaction), and its largest array is 64 KiB.
MAX_BLOCK_SIZE = 4096

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

#: Version 2's tables for transactions (the module docstring describes their layout).
_V2 = """
CREATE TABLE transaction_blocks (
    id               INTEGER PRIMARY KEY,
    app              TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    grp              TEXT    NOT NULL,
    background       INTEGER NOT NULL,
    pid              INTEGER NOT NULL,
    window_start     REAL    NOT NULL,  -- the harvest window of the batch
    window_end       REAL    NOT NULL,
    count            INTEGER NOT NULL,  -- transactions in the block
    first_start      REAL    NOT NULL,
    last_start       REAL    NOT NULL,
    start            BLOB    NOT NULL,  -- float64 LE, epoch seconds
    duration         BLOB    NOT NULL,  -- float64 LE, seconds
    exclusive        BLOB,              -- float64 LE, seconds; NULL: equal to duration
    cpu_time         BLOB,              -- float64 LE, NaN: not measured; NULL: none was
    thread_id        BLOB    NOT NULL,  -- uint64 LE; just one: all ran on that thread
    trace_id         BLOB    NOT NULL,  -- 16 bytes BE per transaction
    span_id          BLOB    NOT NULL,  -- 8 bytes BE per transaction
    dropped_segments BLOB,              -- uint32 LE; NULL: all zero
    attributes       TEXT               -- JSON {"<index>": {...}}; NULL: none has any
);
CREATE INDEX transaction_blocks_by_key
    ON transaction_blocks (app, grp, name, window_end);
CREATE TABLE segment_blocks (
    block_id INTEGER PRIMARY KEY,  -- transaction_blocks.id
    count    INTEGER NOT NULL,
    names    TEXT    NOT NULL,     -- JSON array of distinct [name, group] pairs
    txn      BLOB    NOT NULL,     -- uint32 LE: the transaction's index in the block
    name_idx BLOB    NOT NULL,     -- uint32 LE: index into names
    start    BLOB    NOT NULL,     -- float64 LE: seconds after the transaction's start
    duration BLOB    NOT NULL,     -- float64 LE
    parent   BLOB    NOT NULL      -- int32 LE: index among the transaction's segments, -1
);
CREATE TABLE errors (
    block_id  INTEGER NOT NULL,
    txn       INTEGER NOT NULL,
    type      TEXT    NOT NULL,
    message   TEXT    NOT NULL,
    traceback TEXT    NOT NULL,
    timestamp REAL    NOT NULL
);
CREATE INDEX errors_by_block ON errors (block_id, txn);
"""


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 2: pack version 1's ``transactions``, ``segments`` and ``errors`` rows into
    blocks, then drop those tables (``metrics`` and ``drops`` stay as they are).

    Version 1 did not keep the harvest window of a row, so each row goes to the earliest
    ``metrics`` window of its (app, group, name) that ended at or after the transaction
    did (``start + duration``): the harvest that wrote it -- or, when several processes
    wrote that key, possibly another process's harvest that ended before its own, by at
    most a harvest interval. That keeps ``report --since`` cutting migrated rows where it
    cuts their metrics. Rows without such a window (none is expected) are packed per key
    with the window from their earliest start to their latest end. A block holds the rows
    of one window and key (at most :data:`MAX_BLOCK_SIZE`), in their original order;
    blocks follow window order. ``dropped_segments``, which version 1 did not keep, is 0.
    """
    conn.execute("ALTER TABLE errors RENAME TO errors_v1")
    for statement in _statements(_V2):
        conn.execute(statement)
    rows = conn.execute(
        "SELECT m.window_start, m.window_end, t.app, t.name, t.grp, t.background, t.pid, "
        "t.id, t.start, t.duration, t.exclusive, t.cpu_time, t.thread_id, t.trace_id, "
        "t.span_id, t.attributes "
        "FROM transactions AS t LEFT JOIN metrics AS m ON m.rowid = ("
        "SELECT rowid FROM metrics WHERE app = t.app AND grp = t.grp AND name = t.name "
        "AND window_end >= t.start + t.duration ORDER BY window_end LIMIT 1) "
        "ORDER BY m.window_end, m.window_start, t.app, t.name, t.grp, t.background, t.pid, t.id"
    )
    blocks = _Blocks(1)
    for (window_start, window_end, *_), grouped in groupby(rows, key=itemgetter(*range(7))):
        group = list(grouped)
        if window_end is None:
            window_start = min(row[8] for row in group)
            window_end = max(row[8] + row[9] for row in group)
        for offset in range(0, len(group), MAX_BLOCK_SIZE):
            chunk = group[offset : offset + MAX_BLOCK_SIZE]
            blocks.add(_v1_records(conn, chunk), window_start, window_end)
            # Insert as we go, so that memory holds one block, not the whole table.
            blocks.insert(conn)
    for table in ("transactions", "segments", "errors_v1"):
        conn.execute(f"DROP TABLE {table}")


def _v1_records(conn: sqlite3.Connection, rows: Sequence[Any]) -> List[TransactionRecord]:
    """Version 1 ``transactions`` rows (as selected by :func:`_migrate_1_to_2`) as records,
    with their segments and errors."""
    ids = [row[7] for row in rows]
    segments = _v1_children(
        conn,
        "SELECT transaction_id, name, grp, start, duration, parent FROM segments "
        "WHERE transaction_id IN ({}) ORDER BY transaction_id, idx",
        ids,
        SegmentRecord,
    )
    errors = _v1_children(
        conn,
        "SELECT transaction_id, type, message, traceback, timestamp FROM errors_v1 "
        "WHERE transaction_id IN ({}) ORDER BY transaction_id, rowid",
        ids,
        ErrorRecord,
    )
    return [
        TransactionRecord(
            app=app,
            name=name,
            group=group,
            background=bool(background),
            start=start,
            duration=duration,
            exclusive=exclusive,
            cpu_time=cpu_time,
            pid=pid,
            thread_id=thread_id,
            errors=errors.get(tx_id, ()),
            attributes=MappingProxyType(json.loads(attributes)) if attributes else EMPTY_ATTRIBUTES,
            segments=segments.get(tx_id, ()),
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
        )
        for (
            _,
            _,
            app,
            name,
            group,
            background,
            pid,
            tx_id,
            start,
            duration,
            exclusive,
            cpu_time,
            thread_id,
            trace_id,
            span_id,
            attributes,
        ) in rows
    ]


def _v1_children(
    conn: sqlite3.Connection, sql: str, ids: Sequence[int], make: Callable[..., Any]
) -> Dict[int, Tuple[Any, ...]]:
    """``make(*columns)`` of the rows ``sql`` selects for ``ids``, per transaction id (the
    first column), in the query's order. ``sql`` has ``{}`` where the ids' placeholders go."""
    found: Dict[int, Tuple[Any, ...]] = {}
    step = 500  # well under SQLite's limit on host parameters (999 before 3.32)
    for offset in range(0, len(ids), step):
        chunk = ids[offset : offset + step]
        cursor = conn.execute(sql.format(",".join("?" * len(chunk))), chunk)
        for tx_id, children in groupby(cursor, key=itemgetter(0)):
            found[tx_id] = tuple(make(*row[1:]) for row in children)
    return found


#: A migration step: a SQL script, or a function run inside the migration's transaction.
_Step = Union[str, Callable[[sqlite3.Connection], None]]

#: ``_MIGRATIONS[n]`` brings a database from version n-1 to version n; a new file runs
#: them all.
_MIGRATIONS: Dict[int, _Step] = {1: _V1, 2: _migrate_1_to_2}


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema of ``conn`` up to :data:`SCHEMA_VERSION`; returns the version.

    Runs in one ``BEGIN IMMEDIATE`` transaction, and reads the version again once it holds
    the write lock, so concurrent processes opening a new or older file migrate it
    exactly once.

    Raises:
        StoreError: the file was written by a newer tasktrace (schema version higher
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
            row = conn.execute("PRAGMA database_list").fetchone()
            raise _too_new(row[2] if row and row[2] else "the tasktrace database", version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            step = _MIGRATIONS[target]
            if isinstance(step, str):
                for statement in _statements(step):
                    conn.execute(statement)
            else:
                step(conn)
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


#: The first 16 bytes of every SQLite database file.
_SQLITE_HEADER = b"SQLite format 3\x00"
_OTHER_FILE = "point --db, TASKTRACE_DB or [reporter] path at a tasktrace store or a new file"


def _too_new(path: str, version: int) -> StoreError:
    return StoreError(
        path,
        f"has tasktrace schema version {version}, newer than {SCHEMA_VERSION} which this "
        "tasktrace understands",
        "upgrade tasktrace",
    )


def corrupt_store_error(path: str, exc: object) -> StoreError:
    """The :class:`StoreError` for a store SQLite finds corrupt (``exc`` says how)."""
    return StoreError(
        path,
        f"is a corrupt or truncated SQLite database ({exc})",
        "move it aside (tasktrace then starts a new store there)",
    )


def _check_file(path: str) -> None:
    """Raise :class:`StoreError` if the file at ``path`` cannot be a store, before SQLite
    opens it: a directory, unreadable, not SQLite, or shorter than its header says.

    A missing or empty file passes (it is a new database).
    """
    if os.path.isdir(path):
        raise StoreError(path, "is a directory, not a file", _OTHER_FILE)
    if not os.path.lexists(path):
        return  # a new file (if its directory cannot hold one, creating it will say so)
    try:
        with open(path, "rb") as file:
            header = file.read(100)
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(
            path, f"cannot be read ({exc.strerror or exc})", "check its permissions"
        ) from exc
    if not header:
        return
    if not header.startswith(_SQLITE_HEADER):
        raise StoreError(path, "is not a SQLite database", _OTHER_FILE)
    if len(header) < 100:
        raise corrupt_store_error(path, f"{size} bytes, less than a SQLite header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count in the header is valid only when its change counter matches.
    if header[24:28] == header[92:96] and size < page_size * pages:
        raise corrupt_store_error(path, f"{size} bytes of the {page_size * pages} its header gives")


def _check_ours(conn: sqlite3.Connection, path: str, version: int) -> None:
    """Raise :class:`StoreError` if ``conn`` is a SQLite database that tasktrace did not
    make (tables, but no ``schema_version``), or one of a newer schema."""
    if version > SCHEMA_VERSION:
        raise _too_new(path, version)
    if version:
        return
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    if names and not {"schema_version", "metrics"} & set(names):
        from tasktrace._sanitize import clean

        shown = ", ".join(clean(name) for name in sorted(names)[:3])
        more = ", ..." if len(names) > 3 else ""
        raise StoreError(
            path,
            f"is a SQLite database but not a tasktrace store (its tables: {shown}{more})",
            f"tasktrace does not write into it; {_OTHER_FILE}",
        )


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

    A file it creates is ``0600`` (and so are SQLite's ``-wal`` and ``-shm`` files next to
    it), directories it creates ``0700``: see :mod:`tasktrace._files`.

    The connection is in autocommit mode (``isolation_level=None``): callers issue
    ``BEGIN IMMEDIATE`` / ``COMMIT`` themselves, so one harvest is one transaction. A
    ``readonly`` connection to a file of an older schema first migrates the file, as any
    writer would, so that ``report`` reads what a program wrote before an upgrade.

    Raises:
        FileNotFoundError: ``readonly`` and the file does not exist.
        StoreError: the file cannot be a store: a directory, unreadable, not SQLite,
            corrupt or truncated, another program's SQLite database (never written to),
            or of a newer schema.
        sqlite3.Error: the database is locked beyond the busy timeout (see :func:`migrate`).
    """
    path = os.path.abspath(os.path.expanduser(path))
    if readonly:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        _check_file(path)
        conn = _connect_readonly(path, busy_timeout_ms)
        try:
            version = _read_version(conn)
            _check_ours(conn, path, version)
        except sqlite3.OperationalError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise corrupt_store_error(path, exc) from exc
        except BaseException:
            conn.close()
            raise
        if 0 < version < SCHEMA_VERSION:
            conn.close()
            connect(path, busy_timeout_ms=busy_timeout_ms).close()
            conn = _connect_readonly(path, busy_timeout_ms)
        return conn
    _check_file(path)
    # Created by us: 0600 in directories made 0700 (the -wal and -shm files follow).
    _files.touch_private(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    try:
        # The busy timeout first, so that the journal-mode switch and the migration of a
        # brand-new file wait for other processes doing the same.
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # Before anything is written: never add our tables to another program's database.
        _check_ours(conn, path, _read_version(conn))
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL is durable across application crashes; only an OS crash or
        # power loss can lose the last transactions, and it spares an fsync per harvest.
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
    except sqlite3.OperationalError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise corrupt_store_error(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_readonly(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, timeout=0)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


# -- packing -------------------------------------------------------------------------------


def _typecode(candidates: str, size: int) -> str:
    """The first ``array`` type code among ``candidates`` whose items are ``size`` bytes."""
    return next(code for code in candidates if array(code).itemsize == size)


_U32 = _typecode("IL", 4)
_I32 = _typecode("il", 4)
# "L" first: where it is 8 bytes, ints convert to it several times faster than to "Q".
_U64 = _typecode("LQ", 8)
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_BIG: Literal["big"] = "big"
_NAN = float("nan")
#: ``_NAN_FOR_NONE.get(value, value)``: NaN for None, the value itself otherwise -- a
#: substitution that ``map`` runs in C.
_NAN_FOR_NONE: Dict[Optional[float], float] = {None: _NAN}


class _BlockKey(NamedTuple):
    """What the transactions of one block share."""

    app: str
    name: str
    group: str
    background: bool
    pid: int


#: Where each field is in a chunk of records transposed into columns (``list(zip(*chunk))``)
#: or segments likewise; looked up by name, so they follow the record types.
_KEY_COLUMNS = tuple(map(TransactionRecord._fields.index, _BlockKey._fields))
(
    _START,
    _DURATION,
    _EXCLUSIVE,
    _CPU_TIME,
    _THREAD_ID,
    _TRACE_ID,
    _SPAN_ID,
    _DROPPED_SEGMENTS,
    _ATTRIBUTES,
    _SEGMENTS,
    _ERRORS,
) = map(
    TransactionRecord._fields.index,
    (
        "start",
        "duration",
        "exclusive",
        "cpu_time",
        "thread_id",
        "trace_id",
        "span_id",
        "dropped_segments",
        "attributes",
        "segments",
        "errors",
    ),
)
_SEG_NAME, _SEG_GROUP, _SEG_START, _SEG_DURATION, _SEG_PARENT = map(
    SegmentRecord._fields.index, ("name", "group", "start", "duration", "parent")
)


def _little_endian(values: array[Any]) -> bytes:
    """The bytes of ``values`` in little-endian order (``values`` is left unchanged)."""
    if not _LITTLE_ENDIAN_HOST:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _big_endian(values: array[Any]) -> bytes:
    """The bytes of ``values`` in big-endian order (``values`` is left unchanged)."""
    if _LITTLE_ENDIAN_HOST:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


#: Rows per ``zip(*rows)`` in :func:`_transpose`: below the garbage collector's threshold.
_TRANSPOSE_ROWS = 512


def _transpose(rows: Sequence[Tuple[Any, ...]]) -> List[List[Any]]:
    """The columns of ``rows`` (``list(zip(*rows))``, as lists), in one pass in C.

    ``zip`` holds an iterator per row, and iterators are objects the garbage collector
    tracks: more than its threshold (700) of them at once would set off collections,
    which then cost more than the transposition. Hence a few hundred rows at a time.
    """
    columns: List[List[Any]] = [[] for _ in rows[0]] if rows else []
    for offset in range(0, len(rows), _TRANSPOSE_ROWS):
        for column, part in zip(columns, zip(*rows[offset : offset + _TRANSPOSE_ROWS])):
            column += part
    return columns


class _Blocks:
    """Packed rows waiting to be inserted, with block ids allocated from ``next_id``.

    The caller holds the write lock (``BEGIN IMMEDIATE``), which makes the ids safe.
    """

    def __init__(self, next_id: int) -> None:
        self.next_id = next_id
        self._blocks: List[Tuple[Any, ...]] = []
        self._segments: List[Tuple[Any, ...]] = []
        self._errors: List[Tuple[Any, ...]] = []
        self._transactions = 0

    def add(
        self, records: Sequence[TransactionRecord], window_start: float, window_end: float
    ) -> None:
        """Pack ``records``, written with the harvest window given, into blocks: per block
        key, in their order, at most :data:`MAX_BLOCK_SIZE` transactions each."""
        # The records are taken a block's worth at a time and transposed into columns in
        # one pass, in C. A chunk of one key (the common case) is packed at once, from
        # those columns, while they are in the CPU cache; the records of chunks with
        # several keys are sorted out one by one and packed per key at the end. A key
        # with records held back takes its next chunks through the same path, to keep
        # its order.
        held: Dict[Tuple[Any, ...], List[TransactionRecord]] = {}
        for offset in range(0, len(records), MAX_BLOCK_SIZE):
            chunk = records[offset : offset + MAX_BLOCK_SIZE]
            columns = _transpose(chunk)
            keys = [columns[index] for index in _KEY_COLUMNS]
            first = tuple(column[0] for column in keys)
            if first not in held and all(column.count(column[0]) == len(chunk) for column in keys):
                self._add_block(_BlockKey(*first), columns, window_start, window_end)
                continue
            for key, record in zip(zip(*keys), chunk):
                same_key = held.get(key)
                if same_key is None:
                    held[key] = [record]
                else:
                    same_key.append(record)
        for key, same_key in held.items():
            for offset in range(0, len(same_key), MAX_BLOCK_SIZE):
                part = same_key[offset : offset + MAX_BLOCK_SIZE]
                self._add_block(_BlockKey(*key), _transpose(part), window_start, window_end)

    def _add_block(
        self,
        key: _BlockKey,
        columns: Sequence[Sequence[Any]],
        window_start: float,
        window_end: float,
    ) -> None:
        """Pack one block from its records' ``columns``. The only Python-level loops run
        over the transactions that have errors or attributes."""
        block_id = self.next_id
        self.next_id += 1
        start, duration, exclusive = columns[_START], columns[_DURATION], columns[_EXCLUSIVE]
        n = len(start)
        cpu_time = columns[_CPU_TIME]
        unmeasured = cpu_time.count(None)
        if unmeasured == n:
            cpu_blob: Optional[bytes] = None
        elif unmeasured:
            cpu_blob = _little_endian(array("d", map(_NAN_FOR_NONE.get, cpu_time, cpu_time)))
        else:
            cpu_blob = _little_endian(array("d", cpu_time))
        thread_id = columns[_THREAD_ID]
        if thread_id.count(thread_id[0]) == n:
            thread_id = thread_id[:1]  # one thread ran them all: its id is stored once
        dropped = columns[_DROPPED_SEGMENTS]
        start_array = array("d", start)  # before min() and max(), which then find it cached
        self._blocks.append(
            (
                block_id,
                *key,
                window_start,
                window_end,
                n,
                min(start),
                max(start),
                _little_endian(start_array),
                _little_endian(array("d", duration)),
                # Without function traces, exclusive time is the duration (the same float).
                None if exclusive == duration else _little_endian(array("d", exclusive)),
                cpu_blob,
                _little_endian(array(_U64, thread_id)),
                b"".join(map(int.to_bytes, columns[_TRACE_ID], repeat(16), repeat(_BIG))),
                _big_endian(array(_U64, columns[_SPAN_ID])),
                _little_endian(array(_U32, dropped)) if any(dropped) else None,
                _attributes_json(columns[_ATTRIBUTES]),
            )
        )
        segments = columns[_SEGMENTS]
        if any(segments):
            self._segments.append(_pack_segments(block_id, segments))
        errors = columns[_ERRORS]
        if any(errors):
            self._errors.extend(
                (block_id, index, error.type, error.message, error.traceback, error.timestamp)
                for index in compress(range(n), errors)
                for error in errors[index]
            )
        self._transactions += n

    def insert(self, conn: sqlite3.Connection) -> int:
        """Insert the packed rows and forget them; returns the transactions they hold."""
        if self._blocks:
            conn.executemany(
                "INSERT INTO transaction_blocks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self._blocks,
            )
        if self._segments:
            conn.executemany("INSERT INTO segment_blocks VALUES (?,?,?,?,?,?,?,?)", self._segments)
        if self._errors:
            conn.executemany("INSERT INTO errors VALUES (?,?,?,?,?,?)", self._errors)
        inserted, self._transactions = self._transactions, 0
        self._blocks, self._segments, self._errors = [], [], []
        return inserted


def _attributes_json(attributes: Sequence[Mapping[str, Any]]) -> Optional[str]:
    """The ``attributes`` column: ``{"<index>": {...}}`` of the non-empty mappings."""
    if not any(attributes):
        return None
    present = {index: dict(attributes[index]) for index in compress(count(), attributes)}
    # Values are str, int, float or bool (see Transaction.add_custom_attribute); str()
    # covers anything else a hand-built record may carry rather than fail the batch.
    return json.dumps(present, default=str)


def _pack_segments(
    block_id: int, per_transaction: Sequence[Tuple[SegmentRecord, ...]]
) -> Tuple[Any, ...]:
    """The ``segment_blocks`` row of a block whose transactions have ``per_transaction``."""
    segments = list(chain.from_iterable(per_transaction))
    columns = _transpose(segments)
    names, groups = columns[_SEG_NAME], columns[_SEG_GROUP]
    index: Dict[Any, int]
    keys: Sequence[Any]
    if groups.count(groups[0]) == len(groups):
        # One group (usually "Function"): the names alone tell the pairs apart.
        keys = names
        index = dict(zip(dict.fromkeys(names), count()))
        pairs: List[Sequence[str]] = [(name, groups[0]) for name in index]
    else:
        # Each pair as one int, its name's number * width + its group's number: unlike
        # tuples, ints are no work for the garbage collector.
        name_list = list(dict.fromkeys(names))
        group_list = list(dict.fromkeys(groups))
        width = len(group_list)
        name_number = dict(zip(name_list, count()))
        group_number = dict(zip(group_list, count()))
        keys = list(
            map(
                add,
                map(mul, map(name_number.__getitem__, names), repeat(width)),
                map(group_number.__getitem__, groups),
            )
        )
        index = dict(zip(dict.fromkeys(keys), count()))
        pairs = [(name_list[key // width], group_list[key % width]) for key in index]
    owners = chain.from_iterable(map(repeat, count(), map(len, per_transaction)))
    return (
        block_id,
        len(segments),
        json.dumps(pairs),
        _little_endian(array(_U32, owners)),
        _little_endian(array(_U32, map(index.__getitem__, keys))),
        _little_endian(array("d", columns[_SEG_START])),
        _little_endian(array("d", columns[_SEG_DURATION])),
        _little_endian(array(_I32, columns[_SEG_PARENT])),
    )


# -- writes --------------------------------------------------------------------------------


class Written(Protocol):
    """What :func:`write_batches` reads of a batch (``reporters.base.Batch`` is one): the
    store depends on the data, not on the reporters."""

    @property
    def records(self) -> Tuple[TransactionRecord, ...]: ...
    @property
    def metrics(self) -> Mapping[MetricKey, MetricStats]: ...
    @property
    def window_start(self) -> float: ...
    @property
    def window_end(self) -> float: ...
    @property
    def drops(self) -> Tuple[DropCount, ...]: ...
    @property
    def pid(self) -> int: ...


class WriteRefused(Exception):
    """The commit was refused (the exit warning has been said): nothing was written."""


def write_batches(
    conn: sqlite3.Connection,
    batches: Sequence[Written],
    commit: Optional[Callable[[], bool]] = None,
) -> int:
    """Write ``batches`` in one ``BEGIN IMMEDIATE`` transaction; returns the number of
    transactions written.

    Each batch's records become blocks (one or more per key, see the module docstring) with
    ids allocated here (``MAX(id) + 1 ...``, safe because the write lock is held), so that
    segments and errors are inserted with ``executemany`` instead of a round trip per
    block; its metrics and drops become rows of their own.

    Args:
        commit: Commits the transaction and returns True, or returns False to have it
            rolled back instead (a :class:`~tasktrace.reporters.base.CommitGate` that
            closed); default: commit.

    Raises:
        sqlite3.OperationalError: ``database is locked`` beyond the busy timeout, disk
            full, ... (nothing is written then).
        WriteRefused: ``commit`` refused (nothing is written).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM transaction_blocks").fetchone()
        blocks = _Blocks(int(row[0]) + 1)
        metric_rows: List[Tuple[Any, ...]] = []
        drop_rows: List[Tuple[Any, ...]] = []
        for batch in batches:
            blocks.add(batch.records, batch.window_start, batch.window_end)
            metric_rows.extend(
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
                for key, stats in batch.metrics.items()
            )
            drop_rows.extend(
                (batch.window_end, batch.pid, d.app, d.reason, d.dropped) for d in batch.drops
            )
        written = blocks.insert(conn)
        if metric_rows:
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?)", metric_rows)
        if drop_rows:
            conn.executemany("INSERT INTO drops VALUES (?,?,?,?,?)", drop_rows)
        if commit is None:
            conn.execute("COMMIT")
        elif not commit():
            raise WriteRefused("the exit warning was said first")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # BEGIN itself failed: there is nothing to roll back
        raise
    return written


# -- reads ---------------------------------------------------------------------------------


def _column(typecode: str, blob: bytes, *, big_endian: bool = False) -> array[Any]:
    """The values a packed column holds, in native byte order."""
    values = array(typecode)
    values.frombytes(blob)
    if big_endian == _LITTLE_ENDIAN_HOST:
        values.byteswap()
    return values


#: What :func:`_decode_block` reads: a block and its segments (NULL when it has none).
_DECODED_COLUMNS = (
    "b.id, b.app, b.name, b.grp, b.background, b.pid, b.count, b.start, b.duration, "
    "b.exclusive, b.cpu_time, b.thread_id, b.trace_id, b.span_id, b.dropped_segments, "
    "b.attributes, s.names, s.txn, s.name_idx, s.start, s.duration, s.parent"
)


def read_transactions(
    conn: sqlite3.Connection,
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    since_seconds: Optional[float] = None,
    now: Optional[float] = None,
) -> Iterator[TransactionRecord]:
    """The stored transactions, decoded into records with their segments, errors and
    attributes (read-only mappings): block by block in the order the blocks were written,
    and within a block in the order the transactions were recorded.

    Every field of a record is kept, so a record reads back equal to the one written
    (``cpu_time`` None included; attribute values, which are str, int, float or bool,
    go through JSON). Which records were stored at all is the sqlite reporter's choice
    (see ``max_rows_per_name``).

    Args:
        conn: A connection from :func:`connect` (``readonly`` or not).
        app: Only this application.
        name_glob: Only task names matching this SQLite ``GLOB`` pattern.
        since_seconds: Only blocks whose harvest window ended at most this many seconds
            before ``now`` (the cut ``report --since`` makes).
        now: Epoch seconds; default ``time.time()``.
    """
    now = time.time() if now is None else now
    where, params = _filters(app, name_glob, "window_end", since_seconds, now)
    cursor = conn.execute(
        f"SELECT {_DECODED_COLUMNS} FROM transaction_blocks AS b "
        f"LEFT JOIN segment_blocks AS s ON s.block_id = b.id{where} ORDER BY b.id",
        params,
    )
    for row in cursor:
        errors = conn.execute(
            "SELECT txn, type, message, traceback, timestamp FROM errors "
            "WHERE block_id = ? ORDER BY txn, rowid",
            (row[0],),
        )
        yield from _decode_block(row, errors)


def _decode_block(
    row: Sequence[Any], error_rows: Iterable[Sequence[Any]]
) -> List[TransactionRecord]:
    """The records of a block: ``row`` has the columns :data:`_DECODED_COLUMNS`,
    ``error_rows`` the block's errors as (txn, type, message, traceback, timestamp) in
    order."""
    (_, app, name, group, background, pid, n, start, duration, exclusive, cpu_time) = row[:11]
    (thread_id, trace_id, span_id, dropped, attributes, names) = row[11:17]
    durations = _column("d", duration)
    words = _column(_U64, trace_id, big_endian=True)  # high, low, high, low, ...
    trace_ids = map(or_, map(lshift, words[0::2], repeat(64)), words[1::2])
    threads = _column(_U64, thread_id)
    thread_ids = repeat(threads[0]) if len(threads) == 1 else threads
    cpu_times: Iterable[Optional[float]] = (
        repeat(None)
        if cpu_time is None
        else [None if math.isnan(value) else value for value in _column("d", cpu_time)]
    )
    attributes_of: Dict[int, Mapping[str, Any]] = (
        {}
        if attributes is None
        else {int(k): MappingProxyType(v) for k, v in json.loads(attributes).items()}
    )
    errors_of = {
        txn: tuple(ErrorRecord(*error[1:]) for error in errors)
        for txn, errors in groupby(error_rows, key=itemgetter(0))
    }
    segments_of = {} if names is None else _decode_segments(names, *row[17:22])
    return [
        TransactionRecord(
            app=app,
            name=name,
            group=group,
            background=bool(background),
            start=tx_start,
            duration=tx_duration,
            exclusive=tx_exclusive,
            cpu_time=tx_cpu_time,
            pid=pid,
            thread_id=tx_thread_id,
            errors=errors_of.get(index, ()),
            attributes=attributes_of.get(index, EMPTY_ATTRIBUTES),
            segments=segments_of.get(index, ()),
            trace_id=tx_trace_id,
            span_id=tx_span_id,
            dropped_segments=tx_dropped,
        )
        for (
            index,
            tx_start,
            tx_duration,
            tx_exclusive,
            tx_cpu_time,
            tx_thread_id,
            tx_trace_id,
            tx_span_id,
            tx_dropped,
        ) in zip(
            range(n),
            _column("d", start),
            durations,
            durations if exclusive is None else _column("d", exclusive),
            cpu_times,
            thread_ids,
            trace_ids,
            _column(_U64, span_id, big_endian=True),
            repeat(0) if dropped is None else _column(_U32, dropped),
        )
    ]


def _decode_segments(
    names: str, txn: bytes, name_idx: bytes, start: bytes, duration: bytes, parent: bytes
) -> Dict[int, Tuple[SegmentRecord, ...]]:
    """A ``segment_blocks`` row's segments, per index of their transaction in the block."""
    pairs: List[List[str]] = json.loads(names)
    segments = [
        SegmentRecord(seg_name, seg_group, seg_start, seg_duration, seg_parent)
        for (seg_name, seg_group), seg_start, seg_duration, seg_parent in zip(
            map(pairs.__getitem__, _column(_U32, name_idx)),
            _column("d", start),
            _column("d", duration),
            _column(_I32, parent),
        )
    ]
    return {
        owner: tuple(map(itemgetter(1), owned))
        for owner, owned in groupby(zip(_column(_U32, txn), segments), key=itemgetter(0))
    }


def durations_by_key(
    conn: sqlite3.Connection,
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    since_seconds: Optional[float] = None,
    now: Optional[float] = None,
) -> Dict[Tuple[str, str, str], List[float]]:
    """The stored durations (seconds) per (app, group, name), each list ascending.

    Only the ``duration`` column is read and decoded, which makes percentiles over many
    transactions cheap. The filters are those of :func:`read_transactions`.
    """
    now = time.time() if now is None else now
    where, params = _filters(app, name_glob, "window_end", since_seconds, now)
    found: Dict[Tuple[str, str, str], array[float]] = {}
    for app_name, group, name, blob in conn.execute(
        f"SELECT app, grp, name, duration FROM transaction_blocks{where}", params
    ):
        values = _column("d", blob)
        key = (app_name, group, name)
        if key in found:
            found[key].extend(values)
        else:
            found[key] = values
    return {key: sorted(values) for key, values in found.items()}


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
