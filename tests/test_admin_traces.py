"""Tests for ``tasktrace-admin traces`` and ``trace ID`` (tasktrace.admin.views and
store._views), run in-process on real SQLite stores written through the store's write path
or by real instrumented code."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest

import tasktrace
from _views_store import NOW, record, write
from tasktrace import store
from tasktrace._sanitize import display_width
from tasktrace.admin import main
from tasktrace.records import SegmentRecord
from tasktrace.store import _schema, _views
from tasktrace.store._packing import _Blocks
from tasktrace.testing import capture_transactions

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
TRACE_HEX = f"{TRACE:032x}"
#: A trace id with TRACE's first 8 hex digits.
OTHER = (0x4BF92F35 << 96) | 1


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> Tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    status, out, err = _run(capsys, *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


def _listing(tmp_path: Path) -> str:
    """Five transactions in two harvests: names a, b, c; durations and starts differ."""
    return write(
        str(tmp_path / "t.db"),
        [
            record("jobs:a", start=NOW - 7200, duration=3.0, trace_id=1, span_id=1),
            record("jobs:b", start=NOW - 50, duration=0.2, trace_id=2, span_id=2),
            record(
                "jobs:a",
                start=NOW - 40,
                duration=1.0,
                trace_id=3,
                span_id=3,
                error=("builtins:KeyError", "k"),
                segments=[SegmentRecord("db", "Function", 0.1, 0.5, -1)],
            ),
        ],
        [
            record("jobs:c", app="other", start=NOW - 30, duration=0.5, trace_id=4, span_id=4),
            record("jobs:b", start=NOW - 20, duration=2.0, trace_id=5, span_id=5),
        ],
    )


def _ids(rows: List[Any]) -> List[int]:
    return [int(row["trace_id"], 16) for row in rows]


def test_traces_json_newest_first_with_exact_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON: newest first, each object with the SPEC keys (error type or null, segments
    counted)."""
    rows = _json(capsys, "traces", "--db", _listing(tmp_path))
    assert _ids(rows) == [5, 4, 3, 2, 1]
    assert set(rows[0]) == set(store.TRACES_KEYS) | {"parent_span_id"}
    third = rows[2]
    assert third == {
        "trace_id": f"{3:032x}",
        "span_id": f"{3:016x}",
        "parent_span_id": None,
        "app": "billing",
        "name": "jobs:a",
        "group": "Function",
        "start": store.rfc3339(NOW - 40),
        "duration_ms": 1000.0,
        "error": "builtins:KeyError",
        "segments": 1,
    }
    assert rows[0]["error"] is None and rows[0]["segments"] == 0


def test_traces_slowest_errors_and_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--slowest orders by duration; --errors, --app, --name, --since and --limit filter."""
    path = _listing(tmp_path)
    assert _ids(_json(capsys, "traces", "--db", path, "--slowest")) == [1, 5, 3, 4, 2]
    assert _ids(_json(capsys, "traces", "--db", path, "--errors")) == [3]
    assert _ids(_json(capsys, "traces", "--db", path, "--app", "other")) == [4]
    assert _ids(_json(capsys, "traces", "--db", path, "--name", "jobs:[ab]", "--slowest")) == [
        1,
        5,
        3,
        2,
    ]
    assert _ids(_json(capsys, "traces", "--db", path, "--since", "1h", "--slowest")) == [
        5,
        3,
        4,
        2,
    ]
    assert _ids(_json(capsys, "traces", "--db", path, "--limit", "2")) == [5, 4]


def test_traces_default_limit_is_20(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --limit, at most 20 transactions."""
    path = write(
        str(tmp_path / "many.db"),
        [record(start=NOW - i, trace_id=i + 1, span_id=i + 1) for i in range(30)],
    )
    assert _ids(_json(capsys, "traces", "--db", path)) == list(range(1, 21))


def _away_from(cut: float, start: float) -> float:
    """``start``, moved a minute earlier if it is within 30 s of ``cut`` (which the
    command computes a little later than the test)."""
    return start - 60 if abs(start - cut) < 30 else start


def test_traces_walk_finds_the_true_top_over_many_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across many harvests and names (blocks whose bounds overlap), --slowest, newest,
    --errors and --slowest --since (a window read whole or walked by duration) return
    exactly what sorting every stored transaction gives."""
    rng = random.Random(7)
    harvests = []
    now = time.time()  # --since cuts from the real now
    for h in range(40):
        harvests.append(
            [
                record(
                    f"jobs:{rng.randrange(4)}",
                    start=_away_from(now - 1500, now - 4000 + h * 100 + rng.random() * 150),
                    duration=rng.random() * 5,
                    trace_id=h * 100 + i + 1,
                    span_id=h * 100 + i + 1,
                    error=("builtins:E", "e") if rng.random() < 0.2 else None,
                )
                for i in range(rng.randrange(1, 12))
            ]
        )
    path = write(str(tmp_path / "walk.db"), *harvests)
    everything = [r for h in harvests for r in h]

    def top(key: Any, keep: Any = lambda r: True) -> List[int]:
        chosen = sorted((r for r in everything if keep(r)), key=key, reverse=True)[:15]
        return [r.trace_id for r in chosen]

    assert _ids(_json(capsys, "traces", "--db", path, "--slowest", "--limit", "15")) == top(
        lambda r: r.duration
    )
    assert _ids(_json(capsys, "traces", "--db", path, "--limit", "15")) == top(lambda r: r.start)
    assert _ids(
        _json(capsys, "traces", "--db", path, "--errors", "--slowest", "--limit", "15")
    ) == top(lambda r: r.duration, lambda r: r.errors)
    recent = top(lambda r: r.duration, lambda r: r.start >= now - 1500)
    since = ("traces", "--db", path, "--slowest", "--since", "1500s", "--limit", "15")
    assert _ids(_json(capsys, *since)) == recent  # the window read whole
    monkeypatch.setattr(_views, "_WINDOW_BLOCKS", 1)
    assert _ids(_json(capsys, *since)) == recent  # the walk by duration


def test_traces_table_fits_80_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table is at most 80 cells wide with long names, and shows a trace id prefix
    that ``trace`` accepts."""
    monkeypatch.setenv("COLUMNS", "80")
    path = write(
        str(tmp_path / "wide.db"),
        [
            record("jobs:" + "x" * 90, app="y" * 40, error=("pkg.mod:" + "E" * 40, "m")),
            record("jobs:short", app="z" * 40, start=NOW - 3600, trace_id=1),
        ],
    )
    status, out, _ = _run(capsys, "traces", "--db", path)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["START", "(UTC)", "MS", "APP", "NAME", "ERROR", "SEGS", "TRACE"]
    assert all(display_width(line) <= 80 for line in lines)
    assert lines[1].split()[-1] == TRACE_HEX[:10]
    assert "\u2026" in lines[1]
    # One app: its column is left out, to give the names room.
    status, out, _ = _run(capsys, "traces", "--db", path, "--app", "z" * 40)
    assert out.splitlines()[0].split() == ["START", "(UTC)", "MS", "NAME", "ERROR", "SEGS", "TRACE"]


def _tree(tmp_path: Path) -> str:
    """One trace of three transactions: a root producer, a job it enqueued (parent: the
    root's span) in another process, and that job's own child; plus another trace."""
    segments = [
        SegmentRecord("fetch", "Function", 0.0, 0.4, -1),
        SegmentRecord("db:query", "Database", 0.1, 0.2, 0),
        SegmentRecord("render", "Function", 0.5, 0.5, -1),
    ]
    return write(
        str(tmp_path / "tree.db"),
        [
            record(
                "jobs:produce",
                start=NOW - 10,
                duration=1.0,
                span_id=0xA,
                segments=segments,
                attributes={"customer": 42, "region": "eu"},
            ),
            record("other", start=NOW - 9, trace_id=OTHER, span_id=0xF),
        ],
        [
            record(
                "jobs:consume",
                start=NOW - 9.5,
                duration=0.3,
                span_id=0xB,
                parent_span_id=0xA,
                pid=777,
                error=("builtins:ValueError", "bad"),
                traceback="Traceback (most recent call last):\n  File x\nValueError: bad\n",
            ),
            record(
                "jobs:grandchild", start=NOW - 9.4, duration=0.1, span_id=0xC, parent_span_id=0xB
            ),
        ],
    )


def test_trace_json_is_exactly_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """trace ID --format json: trace_id and the transactions ordered by start, each with
    the SPEC keys; segments with offsets, durations and parent indexes."""
    doc = _json(capsys, "trace", "--db", _tree(tmp_path), TRACE_HEX)
    assert list(doc) == ["trace_id", "transactions"]
    assert doc["trace_id"] == TRACE_HEX
    txns = doc["transactions"]
    assert [t["name"] for t in txns] == ["jobs:produce", "jobs:consume", "jobs:grandchild"]
    root, job, _ = txns
    assert set(root) == {
        "span_id",
        "parent_span_id",
        "app",
        "name",
        "group",
        "start",
        "duration_ms",
        "exclusive_ms",
        "pid",
        "host",
        "attributes",
        "error",
        "segments",
    }
    assert root["span_id"] == f"{0xA:016x}" and root["parent_span_id"] is None
    assert root["start"] == store.rfc3339(NOW - 10)
    assert root["duration_ms"] == 1000.0
    assert root["exclusive_ms"] == pytest.approx(100.0)
    assert root["host"] == socket.gethostname()
    assert root["attributes"] == {"customer": 42, "region": "eu"}
    assert root["error"] is None
    assert root["segments"] == [
        {
            "name": "fetch",
            "group": "Function",
            "start_offset_ms": 0.0,
            "duration_ms": 400.0,
            "parent": None,
        },
        {
            "name": "db:query",
            "group": "Database",
            "start_offset_ms": 100.0,
            "duration_ms": 200.0,
            "parent": 0,
        },
        {
            "name": "render",
            "group": "Function",
            "start_offset_ms": 500.0,
            "duration_ms": 500.0,
            "parent": None,
        },
    ]
    assert job["parent_span_id"] == f"{0xA:016x}" and job["pid"] == 777
    assert job["error"] == {
        "type": "builtins:ValueError",
        "message": "bad",
        "traceback": "Traceback (most recent call last):\n  File x\nValueError: bad\n",
    }


def test_trace_table_is_a_tree_with_a_waterfall(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table nests a child under its parent, shows each header, attributes, the error
    with its traceback, and a bar per function trace scaled to the transaction, all
    within 80 cells."""
    monkeypatch.setenv("COLUMNS", "80")
    status, out, _ = _run(capsys, "trace", "--db", _tree(tmp_path), TRACE_HEX[:12])
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"trace {TRACE_HEX}: 3 transactions"
    assert all(display_width(line) <= 80 for line in lines)
    assert "billing  jobs:produce  [Function]" in lines
    assert "    billing  jobs:consume  [Function]" in lines
    assert "        billing  jobs:grandchild  [Function]" in lines
    assert any(line.startswith(f"  pid 4242  host {socket.gethostname()}") for line in lines)
    assert "    customer = 42" in lines
    assert "      error: builtins:ValueError: bad" in lines
    assert "        ValueError: bad" in lines
    bars = [line for line in lines if "|" in line]
    assert [line.split("|")[0].strip() for line in bars] == ["fetch", "db:query", "render"]
    assert bars[1].startswith("      db:query")  # nested one level under fetch
    cells = [line.split("|")[1] for line in bars]
    width = len(cells[0])
    assert {len(c) for c in cells} == {width}
    full = "\u2588" if "\u2588" in cells[0] else "#"
    fetch, query, render = (c.index(full) for c in cells)
    assert fetch == 0 and 0 < query < render
    assert abs(cells[2].count(full) - width / 2) <= 1  # half the transaction's time
    assert bars[0].endswith("400.0 ms")


def test_trace_prefix_lookup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A unique prefix of 8 or more hex digits (any case) finds the trace; an ambiguous
    one, an unknown id, a short one and non-hex exit 1 with a message."""
    path = _tree(tmp_path)
    doc = _json(capsys, "trace", "--db", path, TRACE_HEX[:10].upper())
    assert doc["trace_id"] == TRACE_HEX
    status, out, err = _run(capsys, "trace", "--db", path, TRACE_HEX[:8])
    assert (status, out) == (1, "")
    assert "ambiguous" in err and TRACE_HEX in err and f"{OTHER:032x}" in err
    assert err.count("\n") == 1
    for given, says in (
        ("ffffffffffff", "no stored trace has the id ffffffffffff"),
        ("4bf92f3", "too short"),
        ("4bf92f35-77b3", "is not a trace id"),
        (TRACE_HEX + "00", "is not a trace id"),
    ):
        status, out, err = _run(capsys, "trace", "--db", path, given)
        assert (status, out) == (1, ""), given
        assert says in err and err.count("\n") == 1, err


def test_trace_of_real_instrumented_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task with nested function traces, run for real, reads back as its segments."""

    @tasktrace.function_trace(name="inner")
    def inner() -> None:
        pass

    @tasktrace.function_trace(name="outer")
    def outer() -> None:
        inner()

    @tasktrace.background_task(name="job")
    def job() -> None:
        tasktrace.add_custom_attribute("k", "v")
        outer()

    with capture_transactions() as records:
        job()
    path = write(str(tmp_path / "real.db"), records)
    (txn,) = _json(capsys, "trace", "--db", path, records[0].trace_id_hex)["transactions"]
    assert [(s["name"], s["parent"]) for s in txn["segments"]] == [("outer", None), ("inner", 0)]
    assert txn["attributes"] == {"k": "v"} and txn["pid"] == os.getpid()


def test_hostile_text_in_the_trace_view(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names, attribute keys and values, messages and tracebacks holding escape sequences,
    newlines and wide characters are shown as escapes, within 80 cells."""
    monkeypatch.setenv("COLUMNS", "80")
    path = write(
        str(tmp_path / "hostile.db"),
        [
            record(
                "jobs:\x1b[2J東京" * 5,
                attributes={"k\x1b]0;t\x07": "v\nw\r東京" * 10},
                error=("builtins:ValueError", "a\nb\x1b[31m"),
                traceback="Traceback\n\x1b[1A\rx\u202e\n",
                segments=[SegmentRecord("seg\x1b[5m東京" * 8, "Function", 0.0, 0.005, -1)],
            )
        ],
    )
    for argv in (("trace", TRACE_HEX), ("traces",)):
        status, out, _ = _run(capsys, *argv, "--db", path)
        assert status == 0
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", out)
        assert all(display_width(line) <= 80 for line in out.splitlines())
    _, out, _ = _run(capsys, "trace", TRACE_HEX, "--db", path)
    assert "k\\x1b]0;t\\x07 = v\\nw\\r" in out
    assert "\\x1b[1A\\rx\\u202e" in out


def test_missing_store_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """traces and trace on a missing store: exit 1 with one line, no file created."""
    path = str(tmp_path / "none.db")
    for argv in (("traces",), ("trace", TRACE_HEX)):
        status, out, err = _run(capsys, *argv, "--db", path)
        assert (status, out) == (1, "")
        assert err.count("\n") == 1 and path in err
    assert not os.path.exists(path)


def _version_2_store(path: str) -> None:
    """A store as schema version 2 wrote it (its tables, its block rows, no host, no trace
    index), holding the _tree() transactions of TRACE."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _schema._statements(_schema._V1):
        conn.execute(statement)
    conn.execute("BEGIN")
    _schema._migrate_1_to_2(conn)
    records = (
        record("jobs:produce", start=NOW - 10, duration=1.0, span_id=0xA),
        record(
            "jobs:consume",
            start=NOW - 9,
            duration=2.0,
            span_id=0xB,
            error=("builtins:ValueError", "bad"),
        ),
    )
    blocks = _Blocks(1, version=2)
    blocks.add(records, NOW - 11, NOW - 5)
    blocks.insert(conn)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (2)")
    conn.execute("COMMIT")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(transaction_blocks)")}
    assert "host" not in columns
    conn.close()


def test_version_2_store_is_migrated_and_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version 2 store is migrated on first read: its transactions are listed (newest,
    slowest), its trace found by prefix (host unknown), its errors grouped."""
    path = str(tmp_path / "v2.db")
    _version_2_store(path)
    assert [r["name"] for r in _json(capsys, "traces", "--db", path, "--slowest")] == [
        "jobs:consume",
        "jobs:produce",
    ]
    doc = _json(capsys, "trace", "--db", path, TRACE_HEX[:8])
    assert [t["name"] for t in doc["transactions"]] == ["jobs:produce", "jobs:consume"]
    assert {t["host"] for t in doc["transactions"]} == {None}
    assert [(g["app"], g["name"], g["count"]) for g in _json(capsys, "errors", "--db", path)] == [
        ("billing", "jobs:consume", 1)
    ]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [
        (store.SCHEMA_VERSION,)
    ]
    assert conn.execute("SELECT max_duration FROM transaction_blocks ORDER BY id").fetchall() == [
        (1.0,),
        (2.0,),
    ]
    conn.close()


def test_help_lists_the_views(capsys: pytest.CaptureFixture[str]) -> None:
    """tasktrace-admin help names errors, traces and trace; help trace describes ID."""
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    for command in ("errors", "traces", "trace"):
        assert re.search(rf"^\s+{command}\s+\S", out, re.MULTILINE), command
    with pytest.raises(SystemExit):
        main(["help", "trace"])
    assert "a unique prefix of 8 or more" in " ".join(capsys.readouterr().out.split())


def test_trace_tree_survives_a_loop_of_parents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parent ids that form a loop (or name the transaction itself) still draw every
    transaction once."""
    path = write(
        str(tmp_path / "loop.db"),
        [
            record("jobs:a", span_id=1, parent_span_id=2, start=NOW - 3),
            record("jobs:b", span_id=2, parent_span_id=1, start=NOW - 2),
            record("jobs:c", span_id=3, parent_span_id=3, start=NOW - 1),
        ],
    )
    status, out, _ = _run(capsys, "trace", "--db", path, TRACE_HEX)
    assert status == 0
    headers = [line.strip() for line in out.splitlines() if "[Function]" in line]
    assert headers == [
        "billing  jobs:a  [Function]",
        "billing  jobs:b  [Function]",
        "billing  jobs:c  [Function]",
    ]
