"""Tests for :func:`tasktrace.store.series` (store._series), the dashboard's charts, on real
SQLite stores written through the store's write path."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Dict

import pytest

from _views_store import NOW, record, write
from tasktrace import store


def _series(path: str, **kwargs: Any) -> Dict[str, Any]:
    conn = store.connect(path, readonly=True)
    try:
        return store.series(conn, now=NOW, **kwargs)
    finally:
        conn.close()


def _three(tmp_path: Path) -> str:
    return write(
        str(tmp_path / "s.db"),
        [
            record("jobs:a", start=NOW - 3000, duration=0.1),
            record("jobs:a", start=NOW - 2990, duration=0.3),
        ],
        [record("jobs:a", start=NOW - 600, duration=1.0, error=("x:E", "m"))],
        [record("jobs:b", start=NOW - 100, duration=0.2)],
    )


def test_a_window_counts_in_the_step_its_end_falls_in(tmp_path: Path) -> None:
    """Points are aligned to multiples of the step; calls, errors and p50/p95 are those of
    the windows that ended in each step, and the totals are report's."""
    path = _three(tmp_path)
    result = _series(path, name_glob="jobs:a", step_seconds=600)
    assert result["step_s"] == 600
    busy = [p for p in result["points"] if p["calls"]]
    assert [(p["calls"], p["errors"]) for p in busy] == [(2, 0), (1, 1)]
    assert busy[0]["p50_ms"] == pytest.approx(100.0, rel=0.006)
    assert busy[0]["p95_ms"] == pytest.approx(300.0, rel=0.006)
    assert busy[1]["p50_ms"] == busy[1]["p95_ms"] == pytest.approx(1000.0)
    assert all(
        int(p["t"][14:16]) % 10 == 0 and p["t"].endswith(":00.000Z") for p in result["points"]
    )
    report = store.report_rows(path, name_glob="jobs:a")[0]
    assert sum(p["calls"] for p in result["points"]) == report["calls"]


def test_since_spans_from_the_cut_to_now(tmp_path: Path) -> None:
    """With since, the points cover the whole window up to now, empty steps included."""
    result = _series(_three(tmp_path), since_seconds=3600, step_seconds=60)
    assert 60 <= len(result["points"]) <= 61
    assert sum(p["calls"] for p in result["points"]) == 4
    assert result["points"][0]["calls"] == 0 and result["points"][0]["p50_ms"] is None


def test_the_default_step_keeps_under_120_points(tmp_path: Path) -> None:
    """Without a step, the smallest of STEPS giving fewer than 120 points over the span."""
    path = _three(tmp_path)
    assert _series(path, since_seconds=3600)["step_s"] == 60
    assert _series(path, since_seconds=30 * 86400)["step_s"] == 12 * 3600  # 6 h: 120
    assert _series(path, since_seconds=3 * 3600)["step_s"] == 300


def test_an_empty_store_has_one_empty_point(tmp_path: Path) -> None:
    """No windows match: one point (now's step) with no calls."""
    result = _series(_three(tmp_path), app="nobody")
    assert [p["calls"] for p in result["points"]] == [0]


@pytest.mark.parametrize("step", [0.0, -5.0, float("nan"), float("inf")])
def test_a_step_that_is_not_positive_is_refused(tmp_path: Path, step: float) -> None:
    """step must be a positive, finite number of seconds."""
    with pytest.raises(ValueError, match="greater than zero"):
        _series(_three(tmp_path), step_seconds=step)


def test_a_step_giving_too_many_points_is_refused(tmp_path: Path) -> None:
    """More than MAX_POINTS points is refused with a message saying what to change."""
    with pytest.raises(ValueError, match="choose a longer step"):
        _series(_three(tmp_path), since_seconds=30 * 86400, step_seconds=1)


def test_windows_without_a_histogram_add_calls_but_no_percentiles(tmp_path: Path) -> None:
    """A window written before schema version 3 (no histogram) counts its calls; a step
    holding only such windows has no p50/p95."""
    path = _three(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE metrics SET histogram = NULL WHERE name = 'jobs:b'")
    conn.commit()
    conn.close()
    busy = [p for p in _series(path, name_glob="jobs:b")["points"] if p["calls"]]
    assert [(p["calls"], p["p50_ms"], p["p95_ms"]) for p in busy] == [(1, None, None)]
