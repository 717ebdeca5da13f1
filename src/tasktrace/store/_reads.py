"""Decoding blocks back into :class:`~tasktrace.records.TransactionRecord` objects
(:func:`read_transactions`), or only their durations (:func:`durations_by_key`)."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import groupby, repeat
from operator import itemgetter, lshift, or_
from types import MappingProxyType
from typing import (
    Any,
    Dict,
    List,
    Optional,
    Tuple,
)

from tasktrace.records import (
    EMPTY_ATTRIBUTES,
    ErrorRecord,
    SegmentRecord,
    TransactionRecord,
)
from tasktrace.store._packing import _I32, _LITTLE_ENDIAN_HOST, _U32, _U64

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
    "b.attributes, s.names, s.txn, s.name_idx, s.start, s.duration, s.parent, b.parent_span_id"
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
    parent_blob = row[22]
    parents: Iterable[Optional[int]] = (
        repeat(None)
        if parent_blob is None
        else [value or None for value in _column(_U64, parent_blob, big_endian=True)]
    )
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
            parent_span_id=tx_parent,
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
            tx_parent,
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
            parents,
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
