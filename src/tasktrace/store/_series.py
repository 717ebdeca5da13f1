"""What the dashboard's charts ask of the store: calls, errors, p50 and p95 per time step,
from the ``metrics`` windows (``GET /api/series``, SPEC section 6)."""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any, Dict, List, Optional

from tasktrace.histogram import merge_encoded
from tasktrace.store._reads import _filters

#: The steps a series picks from when none is asked for, in seconds: the smallest that
#: covers the span in at most :data:`TARGET_POINTS` points.
STEPS = (10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
#: How many points a series without an explicit step aims for, at most.
TARGET_POINTS = 120
#: The most points a series may have (an explicit step that gives more is refused).
MAX_POINTS = 5000


def series(
    conn: sqlite3.Connection,
    *,
    app: Optional[str] = None,
    name_glob: Optional[str] = None,
    since_seconds: Optional[float] = None,
    step_seconds: Optional[float] = None,
    now: Optional[float] = None,
) -> Dict[str, Any]:
    """Calls, errors, p50 and p95 per step of ``step_seconds`` over the selected windows.

    A window counts in the step its ``window_end`` falls in (steps are aligned to
    multiples of the step since the epoch), so the series is as fine as the windows: a
    rolled-up hour shows in one step. ``since_seconds`` keeps windows that ended within
    that long before ``now`` (as ``report --since``) and the series then spans from that
    cut to ``now``; without it, the series spans the selected windows. Every step of the
    span has a point; one without calls has ``calls`` 0 and ``p50_ms``/``p95_ms`` None.
    Percentiles are nearest-rank, from the merged latency histograms of the step's windows
    (within 0.55%, as :func:`tasktrace.store.report_rows`), clamped to their exact min and
    max; windows written before schema version 3 have no histogram and add calls only.
    Without ``step_seconds`` the step is the smallest of :data:`STEPS` that covers the span
    in at most :data:`TARGET_POINTS` points.

    Returns:
        ``{"step_s": N, "points": [{"t", "calls", "errors", "p50_ms", "p95_ms"}]}``, ``t``
        the RFC 3339 start of each step, oldest first.

    Raises:
        ValueError: ``step_seconds`` is not positive, or would give more than
            :data:`MAX_POINTS` points.
    """
    from tasktrace.store._views import rfc3339

    now = time.time() if now is None else now
    if step_seconds is not None and not (step_seconds > 0 and math.isfinite(step_seconds)):
        raise ValueError("step must be greater than zero")
    where, params = _filters(app, name_glob, "window_end", since_seconds, now)
    rows = conn.execute(
        "SELECT window_end, count, errors, min, max, histogram FROM metrics"
        f"{where} ORDER BY window_end",
        params,
    ).fetchall()
    if since_seconds is not None:
        first, last = now - since_seconds, now
    elif rows:
        first, last = rows[0][0], rows[-1][0]
    else:
        first = last = now
    span = max(0.0, last - first)
    if step_seconds is None:
        step: float = next((s for s in STEPS if span / s < TARGET_POINTS), STEPS[-1])
        while span / step >= MAX_POINTS:  # (a span of centuries)
            step *= 2
    else:
        step = float(step_seconds)
        if span / step >= MAX_POINTS:
            raise ValueError(
                f"step {step:g}s gives more than {MAX_POINTS} points over {span:g}s: "
                "choose a longer step or a shorter since"
            )
    low = math.floor(first / step)
    high = math.floor(last / step)
    buckets: Dict[int, List[Any]] = {}
    for window_end, count, errors, shortest, longest, histogram in rows:
        index = min(high, max(low, math.floor(window_end / step)))
        bucket = buckets.setdefault(index, [0, 0, math.inf, -math.inf, []])
        bucket[0] += count
        bucket[1] += errors
        bucket[2] = min(bucket[2], shortest)
        bucket[3] = max(bucket[3], longest)
        if histogram is not None:
            bucket[4].append(histogram)
    points = []
    for index in range(low, high + 1):
        calls, errors, shortest, longest, histograms = buckets.get(
            index, [0, 0, math.inf, -math.inf, []]
        )
        merged = merge_encoded(histograms) if histograms else None
        p50 = p95 = None
        if merged is not None and merged.count:
            p50 = merged.quantile(0.50, shortest, longest)
            p95 = merged.quantile(0.95, shortest, longest)
        points.append(
            {
                "t": rfc3339(index * step),
                "calls": int(calls),
                "errors": int(errors),
                "p50_ms": None if p50 is None else p50 * 1000.0,
                "p95_ms": None if p95 is None else p95 * 1000.0,
            }
        )
    step_out: Any = int(step) if float(step).is_integer() else step
    return {"step_s": step_out, "points": points}
