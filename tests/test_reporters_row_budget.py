"""Tests for tasktrace.reporters._row_budget: the reservoir per slot and the token bucket
per task name and minute."""

from __future__ import annotations

import os
from typing import List

from tasktrace.records import TransactionRecord
from tasktrace.reporters._row_budget import RowBudget


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _records(n: int, name: str = "jobs:run", first: int = 0) -> List[TransactionRecord]:
    return [
        TransactionRecord(
            "app", name, "Function", True, float(i), 0.01, 0.01, None, os.getpid(), 1,
            (), {}, (), i + 1, i + 1,
        )
        for i in range(first, first + n)
    ]  # fmt: skip


def test_every_record_of_a_slot_has_the_same_chance() -> None:
    """Ten harvests of 10 records in one slot with room for 10 rows: over many slots each
    of the 100 positions is kept about 10% of the time (a uniform sample), whichever
    harvest it came in, and the kept rows come in the order recorded."""
    records = _records(100)
    warm_up = _records(1000, name="jobs:run", first=1000)
    kept_count = [0] * 100
    trials = 3000
    for _ in range(trials):
        clock = _Clock()
        budget = RowBudget(120, 0, 5.0, clock=clock)  # 2 rows a second: 10 a slot
        clock.now = 0.1
        budget.offer(warm_up)  # the first slot takes the full bucket
        assert len(budget.take_due()) == 120
        for h in range(10):
            clock.now += 0.1
            budget.offer(records[h * 10 : (h + 1) * 10])
            assert budget.take_due() == ()
        clock.now = 5.1
        kept = budget.take_due()
        assert len(kept) in (10, 11)  # (a fraction of a row is kept with that chance)
        assert [r.start for r in kept] == sorted(r.start for r in kept)
        for record in kept:
            kept_count[int(record.start)] += 1
    share = [n / trials for n in kept_count]
    assert all(0.07 <= s <= 0.135 for s in share), share


def test_steady_slots_keep_their_share() -> None:
    """A steady busy name, slot after slot: each slot keeps its budget's share (10 a
    second over 5 s), uniformly among its harvests."""
    clock = _Clock()
    budget = RowBudget(600, 0, 5.0, clock=clock)
    kept_per_slot = []
    first = 0
    for _slot in range(30):
        kept = ()
        for _ in range(50):
            clock.now += 0.1
            budget.offer(_records(100, first=first))
            first += 100
            kept = kept + budget.take_due()
        kept_per_slot.append(len(kept))
    assert all(45 <= n <= 56 for n in kept_per_slot[2:]), kept_per_slot
    assert sum(kept_per_slot) <= 600 + 30 * 5 * 10


def test_errored_and_errorless_records_have_separate_budgets() -> None:
    """Errored records are kept within their own budget, and do not use the others'."""
    from tasktrace.records import ErrorRecord

    error = (ErrorRecord("builtins:ValueError", "bad", "", 0.0),)
    clock = _Clock()
    budget = RowBudget(600, 6, 60.0, clock=clock)
    records = [r._replace(errors=error) if i % 2 else r for i, r in enumerate(_records(2000))]
    clock.now += 0.1
    budget.offer(records)
    kept = budget.take_all()
    assert sum(1 for r in kept if r.errors) == 6
    assert sum(1 for r in kept if not r.errors) == 600


def test_unlimited_budgets_keep_everything_in_order() -> None:
    """Limits of 0 keep every record, as offered."""
    budget = RowBudget(0, 0, 5.0)
    records = _records(50) + _records(30, name="other")
    budget.offer(records)
    assert budget.take_due() == tuple(records)


def test_idle_names_are_forgotten() -> None:
    """A name not seen for a minute costs no memory (its bucket would be full again)."""
    clock = _Clock()
    budget = RowBudget(600, 60, 5.0, clock=clock)
    for i in range(100):
        clock.now += 0.1
        budget.offer(_records(1, name=f"name{i}"))
    clock.now += 5.0
    budget.take_due()  # (their slots close)
    clock.now += 60.0
    budget.offer(_records(1, name="again"))
    budget.take_due()
    assert len(budget._buckets) == 1 and budget.held() <= 1
