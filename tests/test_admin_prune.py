"""Tests for tasktrace.admin.prune: what it removes, what it prints, its exit statuses."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from tasktrace import store
from tasktrace.admin import main
from tasktrace.recorder import aggregate
from tasktrace.records import TransactionRecord
from tasktrace.reporters.base import Batch


def _batch(end: float, n: int = 20) -> Batch:
    records = tuple(
        TransactionRecord(
            "billing", "jobs:a", "Function", True, end - 1, 0.01, 0.01, None,
            os.getpid(), 1, (), {}, (), i + 1, i + 1,
        )
        for i in range(n)
    )  # fmt: skip
    return Batch(records, aggregate(records), end - 5, end, (), os.getpid())


def _store(path: Path, ages: list[float]) -> None:
    conn = store.connect(str(path))
    now = time.time()
    store.write_batches(conn, [_batch(now - age) for age in ages])
    conn.close()


def _count(path: Path, table: str) -> int:
    conn = sqlite3.connect(str(path))
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no tasktrace.toml found: the defaults


def test_prune_older_than_removes_and_says_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--older-than deletes the transactions and windows older than it and prints the
    counts, the space reclaimed and the file's size."""
    db = tmp_path / "s.db"
    _store(db, [10 * 86400, 9 * 86400, 3 * 3600, 60])
    assert main(["prune", "--db", str(db), "--older-than", "1d"]) == 0
    out = capsys.readouterr().out
    assert f"pruned {db} (retention 1d, max_size 1.0 GiB):" in out
    assert "removed 40 transactions (2 blocks) and 2 metrics windows" in out
    assert "reclaimed " in out and "the file is " in out
    assert _count(db, "transaction_blocks") == 2 and _count(db, "metrics") == 2


def test_prune_uses_the_configured_retention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --older-than, the retention comes from TASKTRACE_RETENTION or the config."""
    db = tmp_path / "s.db"
    _store(db, [3 * 3600, 60])
    monkeypatch.setenv("TASKTRACE_RETENTION", "2h")
    assert main(["prune", "--db", str(db)]) == 0
    assert "retention 2h" in capsys.readouterr().out
    assert _count(db, "transaction_blocks") == 1


def test_prune_converts_an_older_store_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store without incremental auto-vacuum is converted, and says so; then not again."""
    db = tmp_path / "old.db"
    _store(db, [60])
    conn = sqlite3.connect(str(db))
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")
    conn.close()
    assert main(["prune", "--db", str(db)]) == 0
    assert "converted the store to incremental auto-vacuum" in capsys.readouterr().out
    assert main(["prune", "--db", str(db)]) == 0
    assert "converted" not in capsys.readouterr().out


def test_prune_without_a_store_or_with_a_bad_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing store is exit 1 (and none is created); a bad --older-than exit 2."""
    missing = tmp_path / "none.db"
    assert main(["prune", "--db", str(missing)]) == 1
    assert f"no tasktrace store at {missing}" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["prune", "--db", str(missing), "--older-than", "soon"]) == 2
    assert "--older-than: invalid duration 'soon'" in capsys.readouterr().err


def test_prune_refuses_a_file_that_is_not_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another program's file is left alone, with one line saying why."""
    other = tmp_path / "notes.txt"
    other.write_text("not a database")
    assert main(["prune", "--db", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tasktrace-admin prune: cannot prune") and err.count("\n") == 1
    assert other.read_text() == "not a database"
