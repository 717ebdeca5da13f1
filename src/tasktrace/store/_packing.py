"""Packing transactions into blocks: one row per (app, name, group, background, pid) and
harvest, whose columns are binary arrays with an element per transaction, built in C
(``zip``, ``array``, ``bytes.join``)."""

from __future__ import annotations

import json
import sqlite3
import sys
from array import array
from collections.abc import Mapping, Sequence
from itertools import chain, compress, count, repeat
from operator import add, mul
from typing import (
    Any,
    Dict,
    List,
    Literal,
    NamedTuple,
    Optional,
    Tuple,
)

from tasktrace.records import (
    SegmentRecord,
    TransactionRecord,
)

#: The most transactions in one block. Packing a block transposes its records into
#: columns, then reads each column; a block this size stays in the CPU cache meanwhile (at
#: 65,536 packing costs a third more per transaction), and its largest array is 64 KiB.
MAX_BLOCK_SIZE = 4096


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
    _PARENT_SPAN_ID,
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
        "parent_span_id",
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


#: The schema version that added ``max_duration``, ``parent_span_id`` and ``host`` to
#: ``transaction_blocks``, ``app`` and ``name`` to ``errors``, and ``trace_index`` (see
#: ``store._schema._migrate_3_to_4``); older versions' tables have none of them.
VIEWS_VERSION = 4

#: The ``transaction_blocks`` columns of schema version 2, in the order a packed row
#: holds them; :data:`VIEWS_VERSION` adds :data:`_VIEWS_BLOCK_COLUMNS` after them.
_V2_BLOCK_COLUMNS = (
    "id, app, name, grp, background, pid, window_start, window_end, count, first_start, "
    "last_start, start, duration, exclusive, cpu_time, thread_id, trace_id, span_id, "
    "dropped_segments, attributes"
)
_VIEWS_BLOCK_COLUMNS = "max_duration, parent_span_id, host"
#: Where the ``trace_id`` column is in a packed row.
_TRACE_ID_POSITION = 16

#: The most bytes of prefixes one ``trace_index`` row holds before a new row is begun (a
#: harvest with more begins a row of its own). Appending rewrites the row, so a small
#: harvest costs at most this much rewriting; a lookup reads ~40 MB of prefixes per 10
#: million transactions, in rows of this size.
TRACE_INDEX_ROW_BYTES = 16384


def index_traces(conn: sqlite3.Connection, first_block: int, last_block: int, ids: bytes) -> None:
    """Add the trace ids ``ids`` (16 bytes each, big-endian) of blocks ``first_block`` to
    ``last_block`` to ``trace_index``: their first 4 bytes are appended to the newest row,
    or begin a new one when that row would grow past :data:`TRACE_INDEX_ROW_BYTES`.

    The caller holds the write lock, and block ids only grow, so the newest row's blocks
    precede ``first_block``.
    """
    if not ids:
        return
    # The first 4 bytes of each 16: a strided view of the bytes, copied in C.
    words = memoryview(ids).cast("I") if _U32 == "I" else memoryview(ids).cast("L")
    prefixes = words[::4].tobytes()
    row = conn.execute(
        "SELECT first_block, prefixes FROM trace_index ORDER BY first_block DESC LIMIT 1"
    ).fetchone()
    if row is not None and len(row[1]) + len(prefixes) <= TRACE_INDEX_ROW_BYTES:
        # Joined here, not with SQL's ||, which makes text of blobs.
        conn.execute(
            "UPDATE trace_index SET last_block = ?, prefixes = ? WHERE first_block = ?",
            (last_block, row[1] + prefixes, row[0]),
        )
    else:
        conn.execute(
            "INSERT INTO trace_index (first_block, last_block, prefixes) VALUES (?, ?, ?)",
            (first_block, last_block, prefixes),
        )


class _Blocks:
    """Packed rows waiting to be inserted, with block ids allocated from ``next_id``.

    The caller holds the write lock (``BEGIN IMMEDIATE``), which makes the ids safe.
    ``host`` is the hostname stored with every block (None: unknown). ``version`` is the
    schema the rows are inserted into: the migration from version 1 inserts into version
    2's tables, without what :data:`VIEWS_VERSION` adds (columns and the trace index).
    """

    def __init__(
        self, next_id: int, host: Optional[str] = None, version: Optional[int] = None
    ) -> None:
        self.next_id = next_id
        self._host = host
        self._version = VIEWS_VERSION if version is None else version
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
        parents = columns[_PARENT_SPAN_ID]
        none_parents = parents.count(None)
        if none_parents == n:
            parent_blob: Optional[bytes] = None
        else:
            # 0 (never a valid span id) where a transaction has no parent.
            zeros = {None: 0}
            parent_blob = _big_endian(array(_U64, map(zeros.get, parents, parents)))
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
                max(duration),
                parent_blob,
                self._host,
            )
        )
        segments = columns[_SEGMENTS]
        if any(segments):
            self._segments.append(_pack_segments(block_id, segments))
        errors = columns[_ERRORS]
        if any(errors):
            self._errors.extend(
                (
                    block_id,
                    index,
                    error.type,
                    error.message,
                    error.traceback,
                    error.timestamp,
                    key.app,
                    key.name,
                )
                for index in compress(range(n), errors)
                for error in errors[index]
            )
        self._transactions += n

    def insert(self, conn: sqlite3.Connection) -> int:
        """Insert the packed rows and forget them; returns the transactions they hold."""
        if self._blocks and self._version < VIEWS_VERSION:
            conn.executemany(
                f"INSERT INTO transaction_blocks ({_V2_BLOCK_COLUMNS}) VALUES ({','.join('?' * 20)})",
                [row[:20] for row in self._blocks],
            )
        elif self._blocks:
            conn.executemany(
                f"INSERT INTO transaction_blocks ({_V2_BLOCK_COLUMNS}, {_VIEWS_BLOCK_COLUMNS}) "
                f"VALUES ({','.join('?' * 23)})",
                self._blocks,
            )
            index_traces(
                conn,
                self._blocks[0][0],
                self._blocks[-1][0],
                b"".join([row[_TRACE_ID_POSITION] for row in self._blocks]),
            )
        if self._segments:
            conn.executemany("INSERT INTO segment_blocks VALUES (?,?,?,?,?,?,?,?)", self._segments)
        if self._errors and self._version < VIEWS_VERSION:
            conn.executemany(
                "INSERT INTO errors VALUES (?,?,?,?,?,?)", [row[:6] for row in self._errors]
            )
        elif self._errors:
            conn.executemany(
                "INSERT INTO errors (block_id, txn, type, message, traceback, timestamp, app, "
                "name) VALUES (?,?,?,?,?,?,?,?)",
                self._errors,
            )
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
