"""Tests for tasktrace.recorder._ledger: every transaction is delivered, dropped with a
reason, or pending, per reporter, and the exit report says exactly what was lost."""

from __future__ import annotations

from tasktrace.recorder._ledger import (
    REASON_AFTER_SHUTDOWN,
    REASON_BUFFER_FULL,
    REASON_NO_REPORTER,
    Ledger,
)
from tasktrace.reporters.base import ExportResult


def _given(ledger: Ledger, name: str, handed: int, stores_metrics: bool = False) -> None:
    account = ledger.account(name, stores_metrics)
    account.in_flight += handed


def test_an_answer_that_says_too_little_is_completed_by_its_success() -> None:
    """A successful answer that accounts for nothing delivered everything it was handed;
    a failed one dropped it, under "<reporter>:export_failed"."""
    ledger = Ledger()
    _given(ledger, "ok", 5)
    _given(ledger, "bad", 5)
    assert ledger.settle(ledger.accounts["ok"], ExportResult(True), 5, {"a": 5}, "a", False) == 0
    assert ledger.settle(ledger.accounts["bad"], ExportResult(False), 5, {"a": 5}, "a", False) == 5
    view = ledger.undelivered(buffered=0)
    assert view["ok"] == (5, {}, 0)
    assert view["bad"] == (0, {"bad:export_failed": 5}, 0)
    assert ledger.drop_totals == {"bad:export_failed": 5}


def test_an_answer_that_says_too_much_is_capped() -> None:
    """Kept, dropped and exported are capped to what the reporter held, in that order."""
    ledger = Ledger()
    _given(ledger, "r", 4)
    answer = ExportResult(True, exported=10, dropped=3, kept=2, reason="full")
    dropped = ledger.settle(ledger.accounts["r"], answer, 4, {"a": 4}, "a", False)
    assert dropped == 2  # 4 held: 2 kept, then at most 2 dropped, nothing exported
    account = ledger.accounts["r"]
    assert (account.kept, account.delivered, account.in_flight) == (2, 0, 0)
    assert account.dropped == {"r:full": 2}
    assert ledger.pending(buffered=0) == 2


def test_drops_go_to_their_apps_and_a_partial_refusal_to_the_first() -> None:
    """A whole batch refused is counted per app as its records spread; a partial refusal
    (which does not say whose spans) goes under the batch's first app, or the fallback."""
    ledger = Ledger()
    _given(ledger, "r", 5)
    ledger.settle(ledger.accounts["r"], ExportResult(False), 5, {"a": 3, "b": 2}, "z", False)
    assert ledger.take_drops() == {("a", "r:export_failed"): 3, ("b", "r:export_failed"): 2}
    _given(ledger, "r", 5)
    ledger.settle(ledger.accounts["r"], ExportResult(True, dropped=1), 5, {"b": 5}, "z", False)
    assert ledger.take_drops() == {("b", "r:rejected"): 1}
    ledger.settle(ledger.accounts["r"], ExportResult(False, dropped=0), 0, {}, "z", False)
    assert ledger.take_drops() == {}
    _given(ledger, "r", 2)
    ledger.settle(ledger.accounts["r"], ExportResult(False), 2, {}, "z", False)
    assert ledger.take_drops() == {("z", "r:export_failed"): 2}


def test_no_reporter_drops_under_its_own_reason() -> None:
    """With no reporter (the empty name) a batch is dropped as "no_reporter"."""
    ledger = Ledger()
    _given(ledger, "", 3)
    ledger.settle(ledger.accounts[""], ExportResult(False, dropped=3), 3, {"a": 3}, "a", False)
    assert ledger.drop_totals == {REASON_NO_REPORTER: 3}


def test_every_transaction_adds_up_per_reporter() -> None:
    """delivered + dropped + pending = recorded for each reporter: evictions count as
    pending for a reporter that stores metrics, as dropped for one that does not."""
    ledger = Ledger()
    recorded = 10 + 4 + 3  # harvested, evicted (in the metrics only), still buffered
    for name, stores in (("sqlite", True), ("otlp", False)):
        _given(ledger, name, 10 + (4 if stores else 0), stores)
    ledger.add_drop("a", REASON_BUFFER_FULL, 4)
    ledger.settle(ledger.accounts["sqlite"], ExportResult(True), 14, {"a": 10}, "a", False)
    ledger.settle(ledger.accounts["otlp"], ExportResult(True, kept=6), 10, {"a": 10}, "a", False)
    view = ledger.undelivered(buffered=3)
    for name, (delivered, dropped, pending) in view.items():
        assert delivered + sum(dropped.values()) + pending == recorded, name
    assert view["sqlite"] == (14, {}, 3)
    assert view["otlp"] == (4, {REASON_BUFFER_FULL: 4}, 9)


def test_a_committed_reporter_counts_what_it_held_as_delivered() -> None:
    """Between a reporter's commit and the ledger's entry, what it held is delivered."""
    ledger = Ledger()
    _given(ledger, "sqlite", 7, True)
    assert ledger.undelivered(0, committed={"sqlite"})["sqlite"] == (7, {}, 0)
    assert ledger.undelivered(0)["sqlite"] == (0, {}, 7)


def test_exit_report_says_nothing_when_all_was_delivered() -> None:
    """A process that delivered everything says nothing at exit."""
    ledger = Ledger()
    _given(ledger, "sqlite", 2, True)
    ledger.settle(ledger.accounts["sqlite"], ExportResult(True), 2, {"a": 2}, "a", False)
    assert ledger.exit_report(ledger.undelivered(0), 5.0, 42) == []


def test_exit_report_counts_pending_as_out_of_time_and_names_every_reason() -> None:
    """Pending transactions are "shutdown_timeout"; each reporter gets one line with its
    reasons; evictions a metrics-storing reporter kept are said once more."""
    ledger = Ledger()
    _given(ledger, "sqlite", 5, True)
    _given(ledger, "otlp", 5)
    ledger.add_drop("a", REASON_BUFFER_FULL, 2)
    ledger.add_drop("a", REASON_AFTER_SHUTDOWN, 1)
    ledger.settle(ledger.accounts["sqlite"], ExportResult(True), 5, {"a": 5}, "a", False)
    answer = ExportResult(False, dropped=5, retryable=True, reason="timeout")
    ledger.settle(ledger.accounts["otlp"], answer, 5, {"a": 5}, "a", True)
    assert ledger.out_of_time
    lines = ledger.exit_report(ledger.undelivered(buffered=1), 5.0, 42)
    assert lines == [
        "tasktrace: delivery did not finish within shutdown_timeout=5.0s",
        "tasktrace: 9 of 9 transactions of process 42 were not delivered to otlp "
        "(after_shutdown: 1, buffer_full: 2, otlp:timeout: 5, shutdown_timeout: 1)",
        "tasktrace: 2 of 7 transactions of process 42 were not delivered to sqlite "
        "(after_shutdown: 1, shutdown_timeout: 1)",
        "tasktrace: the buffer of process 42 was full: 2 transactions were kept only in the "
        "metrics, without their rows (buffer_full: 2)",
    ]
