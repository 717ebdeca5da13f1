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
that is what lets a busy worker store every transaction. Schema version 3 adds the
latency histogram of every metrics window, version 4 what ``errors``, ``traces`` and
``trace`` read. Files of versions 1 (a row per transaction), 2 (no histograms) and 3 are
migrated in place when first opened, once, however many processes open them at the same
time (see :func:`migrate`).

Tables:

* ``transaction_blocks`` -- one row per block. ``app``, ``name``, ``grp``, ``background``
  (0/1) and ``pid`` are shared by the block's transactions; ``window_start`` and
  ``window_end`` are the harvest window of the batch that wrote it (its ``metrics`` row for
  the key ends there too, or covers it and ends within ``harvest_interval`` of it: the
  sqlite reporter adds a busy program's harvests to the row of the interval, and writes
  the rows its budget sampled over that interval with its last harvest, so a ``--since``
  cut differs for the two by less than ``harvest_interval``); ``count`` is the number of
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
  none has. Schema version 4 adds ``max_duration`` (the longest ``duration`` of the
  block, for ``traces --slowest``), ``host`` (the writing process's hostname; NULL in
  blocks written before version 4) and ``parent_span_id`` (8 bytes big-endian per
  transaction, 0 for none; the column is NULL when no transaction of the block has a
  parent).
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
  the transaction in the block), ``type``, ``message``, ``traceback``, ``timestamp``, and
  (version 4) the block's ``app`` and ``name``, so that ``errors`` groups them through
  the index ``errors_by_group`` without a join.
* ``trace_index`` (version 4) -- where trace ids are: a row per run of consecutive blocks
  ``first_block`` .. ``last_block`` whose ``prefixes`` are the first 4 bytes of each of
  their trace ids, in block order. A harvest appends to the newest row until it holds
  ``TRACE_INDEX_ROW_BYTES``, then begins a new one, so a lookup by prefix reads a few
  thousand rows per ten million transactions (and then only the blocks of the rows that
  match), and a small harvest rewrites at most one such row.
* ``metrics`` -- exact aggregates per (app, name, group) per harvest window, including
  transactions that were not stored; ``report`` takes calls, errors, totals and max from
  here. ``histogram`` (a BLOB, :meth:`tasktrace.histogram.Histogram.to_bytes`) holds the
  duration of every one of those transactions, to 0.55%, so ``report``'s percentiles
  cover every call; it is NULL in windows written before version 3.
* ``drops`` -- what was dropped, when, where and why.
* ``schema_version`` -- one row; :func:`migrate` brings older files up to date.

:func:`read_transactions` decodes blocks back into
:class:`~tasktrace.records.TransactionRecord` objects; :func:`durations_by_key` decodes
only the durations, for percentiles.

The package's modules, one concern each: :mod:`._paths` (where the store is),
:mod:`._schema` (tables, migrations, ``connect``), :mod:`._packing` (transactions into
blocks), :mod:`._writes` (a harvest's writes), :mod:`._reads` (blocks back into records),
:mod:`._queries` (what ``report`` asks), :mod:`._views` (what ``errors``, ``traces`` and
``trace`` ask), :mod:`._series` (the dashboard's charts) and :mod:`._retention` (retention, roll-ups, the size limit:
:func:`prune`). ``sqlite3`` is imported by this package and by
the sqlite reporter only, never by ``import tasktrace``.
"""

from __future__ import annotations

from tasktrace.store._liveness import (
    FAILING,
    ScheduledTask,
    check_tasks,
    merge_schedules,
    newest_runs,
    note_finished,
    record_schedules,
    replace_running,
    running_entries,
    stored_schedules,
)
from tasktrace.store._packing import MAX_BLOCK_SIZE
from tasktrace.store._paths import BUSY_TIMEOUT_MS, DB_ENV_VAR, default_db_path, resolve_db_path
from tasktrace.store._queries import (
    REPORT_KEYS,
    drop_totals,
    has_data,
    parse_since,
    percentile,
    report_rows,
)
from tasktrace.store._reads import durations_by_key, read_transactions
from tasktrace.store._retention import PruneReport, file_bytes, prune, vacuum_into_incremental
from tasktrace.store._schema import _V1 as _V1  # (the migration tests build version 1 files)
from tasktrace.store._schema import SCHEMA_VERSION, connect, corrupt_store_error, migrate
from tasktrace.store._series import series
from tasktrace.store._views import (
    DEFAULT_LIMIT,
    ERROR_KEYS,
    MIN_PREFIX,
    TRACES_KEYS,
    TraceLookupError,
    error_groups,
    find_trace,
    list_traces,
    rfc3339,
)
from tasktrace.store._writes import OpenWindow, WriteRefused, Written, write_batches

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DB_ENV_VAR",
    "DEFAULT_LIMIT",
    "ERROR_KEYS",
    "FAILING",
    "MAX_BLOCK_SIZE",
    "MIN_PREFIX",
    "REPORT_KEYS",
    "SCHEMA_VERSION",
    "TRACES_KEYS",
    "OpenWindow",
    "PruneReport",
    "ScheduledTask",
    "TraceLookupError",
    "WriteRefused",
    "Written",
    "check_tasks",
    "connect",
    "corrupt_store_error",
    "default_db_path",
    "drop_totals",
    "durations_by_key",
    "error_groups",
    "file_bytes",
    "find_trace",
    "has_data",
    "list_traces",
    "merge_schedules",
    "migrate",
    "newest_runs",
    "note_finished",
    "parse_since",
    "percentile",
    "prune",
    "read_transactions",
    "record_schedules",
    "replace_running",
    "report_rows",
    "resolve_db_path",
    "rfc3339",
    "running_entries",
    "series",
    "stored_schedules",
    "vacuum_into_incremental",
    "write_batches",
]
