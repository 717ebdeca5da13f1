"""Tests for ``tasktrace-admin errors`` (tasktrace.admin.views and store._views), run
in-process on real SQLite stores written through the store's write path."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import List, Tuple

import pytest

import tasktrace
from _views_store import NOW, record, write
from tasktrace import store
from tasktrace._sanitize import display_width
from tasktrace.admin import main
from tasktrace.testing import capture_transactions


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> Tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _store(tmp_path: Path) -> str:
    """Three groups: (jobs:a, ValueError "bad input 1") twice, the latest at NOW - 10;
    (jobs:a, KeyError) once at NOW - 7200; (jobs:b in app "other", ValueError) at NOW - 30."""
    return write(
        str(tmp_path / "e.db"),
        [
            record(start=NOW - 3700, error=("builtins:ValueError", "bad input 1"), trace_id=0xA1),
            record(start=NOW - 7200, error=("builtins:KeyError", "'k'"), trace_id=0xA2),
            record(start=NOW - 100, duration=0.5),  # no error
        ],
        [
            record("jobs:b", app="other", start=NOW - 30, error=("builtins:ValueError", "x")),
            record(
                start=NOW - 10,
                error=("builtins:ValueError", "bad input 1"),
                traceback="Traceback (most recent call last):\n  latest\nValueError: bad input 1\n",
                trace_id=0xA3,
                span_id=0xB3,
            ),
        ],
    )


def test_json_groups_newest_first_with_exact_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON: one object per (app, name, type, message), the latest error first, with the
    SPEC keys, RFC 3339 UTC times and the latest occurrence's trace id and traceback."""
    status, out, _ = _run(capsys, "errors", "--db", _store(tmp_path), "--format", "json")
    assert status == 0
    groups = json.loads(out)
    assert [(g["app"], g["name"], g["type"], g["message"]) for g in groups] == [
        ("billing", "jobs:a", "builtins:ValueError", "bad input 1"),
        ("other", "jobs:b", "builtins:ValueError", "x"),
        ("billing", "jobs:a", "builtins:KeyError", "'k'"),
    ]
    first = groups[0]
    assert set(store.ERROR_KEYS) <= set(first)
    assert set(first) == set(store.ERROR_KEYS) | {"group", "span_id"}
    assert first["count"] == 2
    assert first["trace_id"] == f"{0xA3:032x}"
    assert first["span_id"] == f"{0xB3:016x}"
    assert first["traceback"].splitlines()[1] == "  latest"
    assert first["last_seen"] == store.rfc3339(NOW - 10 + 0.01)
    assert first["first_seen"] == store.rfc3339(NOW - 3700 + 0.01)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["first_seen"])


def test_filters_and_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--app, --name (a glob), --since (by the error's time) and --limit narrow the groups."""
    path = _store(tmp_path)

    def keys(*argv: str) -> List[Tuple[str, str]]:
        status, out, _ = _run(capsys, "errors", "--db", path, "--format", "json", *argv)
        assert status == 0
        return [(g["name"], g["type"]) for g in json.loads(out)]

    assert keys("--app", "other") == [("jobs:b", "builtins:ValueError")]
    assert keys("--name", "jobs:[a]") == [
        ("jobs:a", "builtins:ValueError"),
        ("jobs:a", "builtins:KeyError"),
    ]
    assert keys("--since", "1h") == [
        ("jobs:a", "builtins:ValueError"),
        ("jobs:b", "builtins:ValueError"),
    ]
    assert keys("--limit", "1") == [("jobs:a", "builtins:ValueError")]
    _, out, _ = _run(capsys, "errors", "--db", path, "--since", "1h", "--format", "json")
    assert json.loads(out)[0]["count"] == 1  # the occurrence an hour ago is cut


def test_table_fits_80_columns_and_cuts_long_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table is at most 80 cells wide; a long message is cut with an ellipsis there,
    and kept whole in JSON."""
    monkeypatch.setenv("COLUMNS", "80")
    message = "could not reach the ledger " + "x" * 200
    path = write(
        str(tmp_path / "long.db"),
        [record("jobs:" + "n" * 60, app="a" * 50, error=("billing.ledger:LedgerError", message))],
    )
    status, out, _ = _run(capsys, "errors", "--db", path)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["COUNT", "LAST", "SEEN", "(UTC)", "APP", "NAME", "TRACE"]
    assert all(display_width(line) <= 80 for line in lines)
    assert lines[2].strip().startswith("billing.ledger:LedgerError: could not reach the ledger")
    assert lines[2].endswith("\u2026")
    assert lines[1].split()[-1] == f"{0x4BF92F3577B34DA6A3CE929D0E0E4736:032x}"[:10]
    _, out, _ = _run(capsys, "errors", "--db", path, "--format", "json")
    assert json.loads(out)[0]["message"] == message


def test_table_lists_count_and_type_without_builtins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each group's row has its count and last time; the line under it its error."""
    status, out, _ = _run(capsys, "errors", "--db", _store(tmp_path))
    assert status == 0
    lines = out.splitlines()
    assert lines[1].split()[0] == "2"
    assert lines[1].split()[3:5] == ["billing", "jobs:a"]
    assert lines[2].strip() == "ValueError: bad input 1"
    assert lines[6].strip() == "KeyError: 'k'"


def test_tracebacks_option_prints_the_latest_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tracebacks adds each group's latest traceback and its full trace id."""
    _, out, _ = _run(capsys, "errors", "--db", _store(tmp_path), "--tracebacks", "--limit", "1")
    assert f"in trace {0xA3:032x}:" in out
    assert "    latest" in out.splitlines()


def test_counts_every_error_of_real_instrumented_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A task that raised ValueError('bad input 2') 50 times is one group of 50, with the
    traceback Python formatted."""

    @tasktrace.background_task(name="bad_job")
    def bad_job() -> None:
        raise ValueError("bad input 2")

    with capture_transactions() as records:
        for _ in range(50):
            with pytest.raises(ValueError):
                bad_job()
    path = write(str(tmp_path / "real.db"), records)
    _, out, _ = _run(capsys, "errors", "--db", path, "--format", "json")
    (group,) = json.loads(out)
    assert (group["name"], group["type"], group["message"], group["count"]) == (
        "bad_job",
        "builtins:ValueError",
        "bad input 2",
        50,
    )
    assert group["trace_id"] == records[-1].trace_id_hex
    assert 'raise ValueError("bad input 2")' in group["traceback"]


def test_no_errors_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store without errors: one line on stderr, nothing on stdout, status 0; JSON []."""
    path = write(str(tmp_path / "ok.db"), [record()])
    status, out, err = _run(capsys, "errors", "--db", path)
    assert (status, out) == (0, "")
    assert err == f"no errors stored in {path}\n"
    _, out, _ = _run(capsys, "errors", "--db", path, "--format", "json")
    assert json.loads(out) == []


def test_missing_store_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that does not exist: exit 1, one line naming it, and no file created."""
    path = str(tmp_path / "none.db")
    status, out, err = _run(capsys, "errors", "--db", path)
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and path in err
    assert not os.path.exists(path)


def test_unreadable_store_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not a store: exit 1 and one line saying what it is."""
    path = tmp_path / "text.db"
    path.write_text("not sqlite\n")
    status, _, err = _run(capsys, "errors", "--db", str(path))
    assert status == 1
    assert err.count("\n") == 1 and "not a SQLite database" in err


def test_hostile_text_never_reaches_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Escape sequences, newlines and carriage returns in a name, message and traceback
    are shown as escapes; wide characters keep the table within 80 cells."""
    monkeypatch.setenv("COLUMNS", "80")
    path = write(
        str(tmp_path / "hostile.db"),
        [
            record(
                "jobs:\x1b[2J\x1b]0;owned\x07東京東京東京東京",
                app="\x9b31m",
                error=("builtins:ValueError", "line one\nline two\r\x1b[31mred"),
                traceback="Traceback\n  \x1b[1A\rFile x\nValueError: \u202eevil\n",
            )
        ],
    )
    status, out, _ = _run(capsys, "errors", "--db", path, "--tracebacks")
    assert status == 0
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", out)
    assert "\\x1b[2J" in out and "line one\\nline two\\r\\x1b[31mred" in out
    assert "\\u202eevil" in out
    assert all(display_width(line) <= 80 for line in out.splitlines())
