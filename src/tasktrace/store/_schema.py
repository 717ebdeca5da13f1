"""The store's schema, its migrations, and opening a file safely: ``connect`` checks that a
file is a tasktrace store (never writing into a foreign SQLite file) and says what is
wrong with one that is not, as a :class:`~tasktrace.exceptions.StoreError`."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Tuple,
    Union,
)
from urllib.parse import quote

from tasktrace import _files
from tasktrace.exceptions import StoreError
from tasktrace.records import (
    EMPTY_ATTRIBUTES,
    ErrorRecord,
    SegmentRecord,
    TransactionRecord,
)
from tasktrace.store._packing import MAX_BLOCK_SIZE, TRACE_INDEX_ROW_BYTES, _Blocks, index_traces
from tasktrace.store._paths import BUSY_TIMEOUT_MS

#: The newest schema this code writes and reads.
SCHEMA_VERSION = 5


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
    blocks = _Blocks(1, version=2)
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


#: Version 3: each metrics window keeps the latency histogram of every call (the
#: encoding of :meth:`tasktrace.histogram.Histogram.to_bytes`); NULL for the windows
#: written before, whose percentiles ``report`` takes from the stored rows.
_V3 = """
ALTER TABLE metrics ADD COLUMN histogram BLOB;
"""

#: What version 4 adds for ``errors``, ``traces`` and ``trace``: three columns of
#: ``transaction_blocks``, the trace id index, and the indexes that let the views read
#: the newest, the slowest and the latest errors without a scan.
_V4 = """
ALTER TABLE transaction_blocks ADD COLUMN max_duration REAL;    -- seconds, the longest
ALTER TABLE transaction_blocks ADD COLUMN parent_span_id BLOB;  -- 8 bytes BE each, 0: none
ALTER TABLE transaction_blocks ADD COLUMN host TEXT;            -- the writer's hostname
CREATE TABLE IF NOT EXISTS trace_index (
    first_block INTEGER PRIMARY KEY,  -- the blocks first_block..last_block, in id order
    last_block  INTEGER NOT NULL,
    prefixes    BLOB    NOT NULL      -- the first 4 bytes of each of their trace ids
);
CREATE INDEX IF NOT EXISTS transaction_blocks_by_last_start
    ON transaction_blocks (last_start);
CREATE INDEX IF NOT EXISTS transaction_blocks_by_max_duration
    ON transaction_blocks (max_duration);
ALTER TABLE errors ADD COLUMN app TEXT;   -- the block's, so that grouping needs no join
ALTER TABLE errors ADD COLUMN name TEXT;
UPDATE errors SET (app, name) = (
    SELECT app, name FROM transaction_blocks WHERE transaction_blocks.id = errors.block_id);
CREATE INDEX IF NOT EXISTS errors_by_timestamp ON errors (timestamp);
CREATE INDEX IF NOT EXISTS errors_by_group ON errors (app, name, type, message, timestamp);
"""


def _floats(blob: bytes) -> List[float]:
    """A column of little-endian float64 values (``start``, ``duration``) as a list."""
    from array import array

    values = array("d")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def _max_float64(blob: bytes) -> float:
    return max(_floats(blob))


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Version 4 (self-contained: it only adds): ``max_duration``, ``parent_span_id`` and
    ``host`` on ``transaction_blocks`` (filled in for existing blocks: the longest
    duration; no parent; host unknown), ``app`` and ``name`` on ``errors`` (their block's),
    the ``trace_index`` of every existing block, and the indexes of ``traces --slowest``,
    ``traces`` and ``errors``."""
    for statement in _statements(_V4):
        conn.execute(statement)
    conn.create_function("_tasktrace_max_float64", 1, _max_float64, deterministic=True)
    conn.execute("UPDATE transaction_blocks SET max_duration = _tasktrace_max_float64(duration)")
    pending: List[bytes] = []
    first = last = 0
    size = 0
    # Read with a cursor of its own, a block at a time: memory holds one index row.
    for block_id, trace_ids in conn.cursor().execute(
        "SELECT id, trace_id FROM transaction_blocks ORDER BY id"
    ):
        if not pending:
            first = block_id
        pending.append(trace_ids)
        last = block_id
        size += len(trace_ids) // 4
        if size >= TRACE_INDEX_ROW_BYTES:
            index_traces(conn, first, last, b"".join(pending))
            pending, size = [], 0
    if pending:
        index_traces(conn, first, last, b"".join(pending))


#: Version 5: liveness (SPEC section 7). ``running``: the tasks each process has had open
#: for a harvest interval, replaced by every harvest of that process; an entry whose
#: process is gone stays, as the record of a task that never ended (*lost*).
#: ``last_runs``: the newest finished run per task. ``schedules``: the scheduled targets
#: the programs recorded, so ``check`` knows them without their config.
_V5 = """
CREATE TABLE IF NOT EXISTS running (
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    pid_start    INTEGER,           -- the process's start (Linux clock ticks since boot)
    span_id      INTEGER NOT NULL,  -- the transaction's span id, as a signed 64-bit value
    app          TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    grp          TEXT    NOT NULL,
    thread       INTEGER NOT NULL,
    trace_id     BLOB    NOT NULL,  -- 16 bytes, big-endian
    started      REAL    NOT NULL,  -- epoch seconds
    last_seen    REAL    NOT NULL,  -- the harvest that last reported it
    interval     REAL    NOT NULL,  -- that process's harvest interval, seconds
    max_duration REAL,              -- its target's limit, seconds
    PRIMARY KEY (host, pid, span_id)
);
CREATE INDEX IF NOT EXISTS running_by_task ON running (app, name, started);
CREATE TABLE IF NOT EXISTS last_runs (
    app      TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    grp      TEXT    NOT NULL,
    start    REAL    NOT NULL,
    duration REAL    NOT NULL,
    error    TEXT,                  -- the last error's type, NULL when it succeeded
    host     TEXT,
    pid      INTEGER,
    trace_id BLOB,
    PRIMARY KEY (app, name)
);
CREATE TABLE IF NOT EXISTS schedules (
    app            TEXT NOT NULL,
    name           TEXT NOT NULL,
    schedule       TEXT NOT NULL,
    grace          REAL,            -- seconds; NULL: the default
    timezone       TEXT,            -- IANA name; NULL: the reader's local zone
    max_duration   REAL,
    first_recorded REAL NOT NULL,   -- when this schedule was first recorded
    updated        REAL NOT NULL,
    PRIMARY KEY (app, name)
);
"""


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Version 5 (only adds): the liveness tables, with ``last_runs`` filled in from the
    newest stored transaction of every background task, so ``check`` knows what ran
    before the upgrade."""
    for statement in _statements(_V5):
        conn.execute(statement)
    newest = conn.execute(
        "SELECT app, name, grp, id, start, duration, host, pid, trace_id, MAX(last_start) "
        "FROM transaction_blocks WHERE background = 1 GROUP BY app, name"
    ).fetchall()
    for app, name, grp, block_id, starts, durations, host, pid, trace_ids, _ in newest:
        start_values = _floats(starts)
        index = max(range(len(start_values)), key=start_values.__getitem__)
        error = conn.execute(
            "SELECT type FROM errors WHERE block_id = ? AND txn = ? ORDER BY rowid DESC LIMIT 1",
            (block_id, index),
        ).fetchone()
        conn.execute(
            "INSERT OR IGNORE INTO last_runs (app, name, grp, start, duration, error, host, "
            "pid, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                app,
                name,
                grp,
                start_values[index],
                _floats(durations)[index],
                None if error is None else error[0],
                host,
                pid,
                bytes(trace_ids[16 * index : 16 * index + 16]),
            ),
        )


#: A migration step: a SQL script, or a function run inside the migration's transaction.
_Step = Union[str, Callable[[sqlite3.Connection], None]]

#: ``_MIGRATIONS[n]`` brings a database from version n-1 to version n; a new file runs
#: them all.
_MIGRATIONS: Dict[int, _Step] = {
    1: _V1,
    2: _migrate_1_to_2,
    3: _V3,
    4: _migrate_3_to_4,
    5: _migrate_4_to_5,
}


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
        version = _read_version(conn)
        _check_ours(conn, path, version)
        if version == 0:
            # A new store gives freed pages back in small steps (store._retention);
            # this takes effect only before the first table is created.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _switch_to_wal(conn, busy_timeout_ms)
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


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """``PRAGMA journal_mode = WAL``, waiting for other processes as a write would.

    Switching a file that is not yet in WAL mode needs it to itself, and SQLite answers
    "database is locked" at once, without its busy handler, while another process holds
    it (several processes opening an older store at the same moment, one of them
    migrating it): so wait here, within the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000.0
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc).lower() or "busy" in str(exc).lower()
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _connect_readonly(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, timeout=0)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn
