"""tasktrace.reporters.base: the export deadline, a batch's time budget and merged metrics."""

from __future__ import annotations

import threading
import time

from tasktrace.reporters.base import Batch, Deadline, MetricStats

#: "At once": far below the waits these tests would otherwise make, with room for a busy
#: 2-core machine's scheduler, seconds.
AT_ONCE = 0.5


def _bring_forward_later(deadline: Deadline, delay: float, at_from_now: float) -> None:
    """In ``delay`` seconds, bring ``deadline`` forward to ``at_from_now`` after that moment."""

    def move() -> None:
        deadline.bring_forward(time.monotonic() + at_from_now)

    timer = threading.Timer(delay, move)
    timer.daemon = True
    timer.start()


def test_deadline_without_a_time_is_none() -> None:
    """Deadline() has no time: ``at`` is None and its repr says so."""
    deadline = Deadline()
    assert deadline.at is None
    assert repr(deadline) == "Deadline(None)"


def test_bring_forward_only_ever_moves_it_sooner() -> None:
    """bring_forward() sets a first deadline and later only an earlier one."""
    deadline = Deadline()
    deadline.bring_forward(100.0)
    assert deadline.at == 100.0
    deadline.bring_forward(200.0)
    assert deadline.at == 100.0
    deadline.bring_forward(50.0)
    assert deadline.at == 50.0


def test_sleep_without_a_deadline_waits_in_full() -> None:
    """With no deadline, sleep(s) waits the whole s seconds."""
    started = time.monotonic()
    Deadline().sleep(0.2)
    elapsed = time.monotonic() - started
    assert 0.2 - 0.01 <= elapsed < 0.2 + 1.0


def test_sleep_of_nothing_returns_at_once() -> None:
    """sleep(0) and a negative sleep return without waiting."""
    started = time.monotonic()
    Deadline().sleep(0)
    Deadline().sleep(-1)
    assert time.monotonic() - started < AT_ONCE


def test_sleep_that_would_end_past_the_deadline_returns_at_once() -> None:
    """A wait that cannot end before the deadline is not started: the caller gives up now."""
    deadline = Deadline(time.monotonic() + 5.0)
    started = time.monotonic()
    deadline.sleep(10.0)
    assert time.monotonic() - started < AT_ONCE


def test_sleep_that_fits_before_the_deadline_waits_in_full() -> None:
    """A wait that ends before the deadline is honoured in full (e.g. a Retry-After)."""
    deadline = Deadline(time.monotonic() + 30.0)
    started = time.monotonic()
    deadline.sleep(0.2)
    assert time.monotonic() - started >= 0.2 - 0.01


def test_bringing_the_deadline_before_the_wait_ends_wakes_the_sleeper() -> None:
    """A deadline brought forward past the end of a wait ends it early, soon after the move."""
    deadline = Deadline()
    _bring_forward_later(deadline, 0.1, at_from_now=0.0)
    started = time.monotonic()
    deadline.sleep(10.0)
    elapsed = time.monotonic() - started
    assert 0.08 <= elapsed < 0.1 + 2.0  # the timer itself may fire a little early


def test_bringing_the_deadline_forward_with_room_left_keeps_the_wait() -> None:
    """A deadline brought forward that still leaves room for the wait does not shorten it."""
    deadline = Deadline()
    _bring_forward_later(deadline, 0.05, at_from_now=30.0)
    started = time.monotonic()
    deadline.sleep(0.3)
    assert time.monotonic() - started >= 0.3 - 0.01


def test_time_left_is_the_default_without_a_deadline() -> None:
    """A batch without a deadline may take the reporter's own timeout."""
    assert Batch(()).time_left(7.5) == 7.5


def test_time_left_is_capped_by_a_float_or_moving_deadline() -> None:
    """time_left() is the default capped by the deadline, a number or a Deadline."""
    soon = time.monotonic() + 1.0
    assert 0.5 < Batch((), deadline=soon).time_left(30.0) <= 1.0
    assert Batch((), deadline=soon).time_left(0.25) == 0.25
    moving = Deadline(time.monotonic() + 30.0)
    batch = Batch((), deadline=moving)
    assert 29.0 < batch.time_left(60.0) <= 30.0
    moving.bring_forward(time.monotonic() + 1.0)
    assert 0.5 < batch.time_left(60.0) <= 1.0  # asked again, it sees the move


def test_time_left_is_never_negative() -> None:
    """A deadline already past leaves zero seconds, not a negative budget."""
    assert Batch((), deadline=time.monotonic() - 5.0).time_left(10.0) == 0.0
    assert Batch((), deadline=Deadline(time.monotonic() - 5.0)).time_left(10.0) == 0.0


def test_batch_sleep_with_a_fixed_deadline_waits_in_full() -> None:
    """Batch.sleep() with a plain-number deadline (nothing can move it) waits the time given."""
    batch = Batch((), deadline=time.monotonic() + 30.0)
    started = time.monotonic()
    batch.sleep(0.2)
    assert time.monotonic() - started >= 0.2 - 0.01


def test_batch_sleep_follows_a_moving_deadline() -> None:
    """Batch.sleep() with a Deadline ends when that deadline is brought before the wait's end."""
    deadline = Deadline()
    _bring_forward_later(deadline, 0.1, at_from_now=0.0)
    started = time.monotonic()
    Batch((), deadline=deadline).sleep(10.0)
    elapsed = time.monotonic() - started
    assert 0.08 <= elapsed < 0.1 + 2.0  # the timer itself may fire a little early


def test_metric_stats_merged_adds_counts_and_keeps_extremes() -> None:
    """merged() sums calls, errors, totals and squares, and keeps the min and max of both."""
    first = MetricStats(calls=2, errors=1, total=3.0, min=1.0, max=2.0, sumsq=5.0)
    second = MetricStats(calls=1, errors=0, total=0.5, min=0.5, max=0.5, sumsq=0.25)
    assert first.merged(second) == MetricStats(3, 1, 3.5, 0.5, 2.0, 5.25)
    assert second.merged(first) == first.merged(second)
