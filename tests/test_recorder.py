"""Tests for tasktrace.recorder: buffer, exact aggregation, isolation, timeouts, fork."""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tasktrace import recorder as recorder_mod
from tasktrace.config import Settings
from tasktrace.histogram import Histogram
from tasktrace.recorder import HARVEST_THREAD_NAME, HarvestRecorder, aggregate
from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.reporters.base import Batch, ExportResult, MetricKey, Reporter
from tasktrace.reporters.memory import MemoryReporter
from tasktrace.reporters.sqlite import SqliteReporter


def _record(
    duration: float = 0.001, *, app: str = "app", name: str = "jobs:run", error: bool = False
) -> TransactionRecord:
    errors = (ErrorRecord("builtins:ValueError", "bad", "tb", time.time()),) if error else ()
    return TransactionRecord(
        app=app,
        name=name,
        group="Function",
        background=True,
        start=time.time(),
        duration=duration,
        exclusive=duration,
        cpu_time=0.0,
        pid=os.getpid(),
        thread_id=threading.get_ident(),
        errors=errors,
        attributes={},
        segments=(SegmentRecord("inner", "Function", 0.0, duration / 2, -1),),
        trace_id=1,
        span_id=1,
    )


class BlockingReporter:
    """Blocks in export until released: holds the harvest thread where a test wants it."""

    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: List[Batch] = []

    def export(self, batch: Batch) -> ExportResult:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(batch)
        return ExportResult(True, exported=len(batch.records))

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        self.release.set()


class FailingReporter:
    """Raises on every export."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def export(self, batch: Batch) -> ExportResult:
        self.calls += 1
        raise RuntimeError("collector on fire")

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        pass


@pytest.fixture
def recorders() -> Iterator[List[HarvestRecorder]]:
    """Recorders made by a test, shut down afterwards."""
    made: List[HarvestRecorder] = []
    yield made
    for rec in made:
        rec.shutdown(0.5)
    recorder_mod._reset_for_tests()


def _make(
    recorders: List[HarvestRecorder], reporters: List[Reporter], **settings: Any
) -> HarvestRecorder:
    values: Dict[str, Any] = {"harvest_interval": 60.0, "buffer_size": 100, "shutdown_timeout": 1.0}
    values.update(settings)
    rec = HarvestRecorder(Settings(**values), reporters=reporters, install_process_hooks=False)
    recorders.append(rec)
    return rec


def test_record_is_delivered_on_flush(recorders: List[HarvestRecorder]) -> None:
    """flush() delivers every buffered record to the reporter and returns True."""
    memory = MemoryReporter()
    rec = _make(recorders, [memory])
    for _ in range(10):
        rec.record(_record())
    assert rec.flush(5.0) is True
    assert len(memory.records) == 10
    assert memory.flushes >= 1


def test_harvest_thread_is_named_and_daemon(recorders: List[HarvestRecorder]) -> None:
    """The harvest thread starts on the first record, as a daemon named tasktrace-harvest."""
    rec = _make(recorders, [MemoryReporter()])
    assert rec._thread is None
    rec.record(_record())
    thread = rec._thread
    assert thread is not None and thread.daemon and thread.name == HARVEST_THREAD_NAME


def _blocked_signals(native_id: int) -> int:
    """The signal mask of a thread of this process, from /proc (Linux)."""
    with open(f"/proc/self/task/{native_id}/status") as status:
        for line in status:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_harvest_thread_blocks_asynchronous_signals(recorders: List[HarvestRecorder]) -> None:
    """The kernel must never hand SIGTERM (or SIGINT, ...) to the harvest thread: Python
    runs handlers in the main thread only, and a main thread blocked in a C call (a pool
    worker waiting on its queue's lock) would never wake up to run ours. The caller's own
    mask is left as it was."""
    before = _blocked_signals(threading.get_native_id())
    rec = _make(recorders, [MemoryReporter()])
    rec.record(_record())
    thread = rec._thread
    assert thread is not None and thread.native_id is not None
    mask = _blocked_signals(thread.native_id)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
        assert mask & (1 << (sig - 1)), sig
    for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE):  # a thread's own faults
        assert not mask & (1 << (sig - 1)), sig
    assert _blocked_signals(threading.get_native_id()) == before


def test_buffer_bound_and_exact_drop_count(recorders: List[HarvestRecorder]) -> None:
    """A full buffer evicts the oldest records; kept + dropped equals recorded, exactly."""
    blocking = BlockingReporter()
    rec = _make(recorders, [blocking], buffer_size=10)
    rec.record(_record(name="first"))
    rec._wake.set()
    assert blocking.entered.wait(5)  # the harvest thread is now stuck in export
    for i in range(1000):
        rec.record(_record(duration=0.001 * (i + 1), name=f"n{i % 3}"))
    assert len(rec._buffer) == 10
    assert rec.drop_totals() == {"buffer_full": 990}
    blocking.release.set()
    assert rec.flush(5.0)
    kept = [r for b in blocking.batches for r in b.records]
    assert len(kept) == 1 + 10
    # The newest records are the ones kept.
    assert [r.duration for r in kept[1:]] == pytest.approx([0.001 * i for i in range(991, 1001)])
    calls = sum(s.calls for b in blocking.batches for s in b.metrics.values())
    assert calls == 1001
    drops = sum(d.dropped for b in blocking.batches for d in b.drops)
    assert drops == 990


def test_exact_counts_with_concurrent_writers(recorders: List[HarvestRecorder]) -> None:
    """With several threads overflowing a small buffer, metrics still count every record."""
    memory = MemoryReporter()
    rec = _make(recorders, [memory], buffer_size=50, harvest_interval=0.01)
    per_thread, threads = 5000, 4

    def work() -> None:
        for _ in range(per_thread):
            rec.record(_record())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert rec.flush(5.0)
    total = per_thread * threads
    stats = memory.metrics()[MetricKey("app", "jobs:run", "Function")]
    assert stats.calls == total
    assert len(memory.records) + memory.drops().get("buffer_full", 0) == total


def test_aggregation_maths() -> None:
    """count, errors, total, min, max and sum of squares are computed per key."""
    durations = [0.5, 0.25, 2.0, 1.0]
    records = [_record(d, error=(i == 1)) for i, d in enumerate(durations)]
    records.append(_record(3.0, name="other"))
    stats = aggregate(records)
    main = stats[MetricKey("app", "jobs:run", "Function")]
    assert main.calls == 4
    assert main.errors == 1
    assert main.total == pytest.approx(sum(durations))
    assert main.min == 0.25 and main.max == 2.0
    assert main.sumsq == pytest.approx(sum(d * d for d in durations))
    assert stats[MetricKey("app", "other", "Function")].calls == 1


@pytest.mark.parametrize("distinct", [1, 3, 8, 9, 40])
def test_aggregation_matches_record_by_record_sums(distinct: int) -> None:
    """Folding a chunk (one key, a few keys, many keys; keys differing in app, name or
    group only; keys interleaved) gives what summing record by record gives, and a second
    chunk folds into the first."""
    rng = random.Random(distinct)
    keys = [
        (f"app{i % 2}", f"jobs:run{i // 6}", "Function" if i % 3 else "Custom")
        for i in range(distinct)
    ]
    records = []
    for _ in range(600):
        app, name, group = keys[rng.randrange(distinct)]
        record = _record(rng.uniform(1e-6, 2.0), app=app, name=name, error=rng.random() < 0.2)
        records.append(record._replace(group=group))
    expected: Dict[Any, List[float]] = {}
    for r in records:
        expected.setdefault((r.app, r.name, r.group), []).append(r.duration)
    aggs: Dict[Any, List[Any]] = {}
    recorder_mod._fold_many(aggs, records[:250])
    recorder_mod._fold_many(aggs, records[250:])
    assert set(aggs) == set(expected)
    for key, durations in expected.items():
        count, errors, total, low, high, sumsq, histogram, error_total, error_hist = aggs[key]
        assert count == len(durations) == histogram.count
        assert errors == sum(1 for r in records if (r.app, r.name, r.group) == key and r.errors)
        errored = [r.duration for r in records if (r.app, r.name, r.group) == key and r.errors]
        assert error_total == pytest.approx(sum(errored), rel=1e-12)
        assert (0 if error_hist is None else error_hist.count) == errors
        if error_hist is not None:  # the errorless calls' histogram is the difference
            ok = [r.duration for r in records if (r.app, r.name, r.group) == key and not r.errors]
            assert histogram.without(error_hist) == Histogram.of(ok)
        assert total == pytest.approx(sum(durations), rel=1e-12)
        assert (low, high) == (min(durations), max(durations))
        assert sumsq == pytest.approx(sum(d * d for d in durations), rel=1e-12)
    whole = aggregate(records)  # one chunk: the same counts and extremes
    assert {key: (s.calls, s.errors, s.min, s.max) for key, s in whole.items()} == {
        MetricKey(*key): (agg[0], agg[1], agg[3], agg[4]) for key, agg in aggs.items()
    }


def test_evicted_records_keep_their_metrics(recorders: List[HarvestRecorder]) -> None:
    """Dropped records still count in min/max/total/errors of their window."""
    blocking = BlockingReporter()
    rec = _make(recorders, [blocking], buffer_size=2)
    rec.record(_record(name="warmup"))
    rec._wake.set()
    assert blocking.entered.wait(5)
    for duration, error in ((9.0, True), (0.1, False), (1.0, False), (2.0, False)):
        rec.record(_record(duration, error=error))
    blocking.release.set()
    assert rec.flush(5.0)
    merged = MemoryReporter()
    for batch in blocking.batches:
        merged.export(batch)
    stats = merged.metrics()[MetricKey("app", "jobs:run", "Function")]
    assert (stats.calls, stats.errors, stats.min, stats.max) == (4, 1, 0.1, 9.0)
    assert stats.total == pytest.approx(12.1)
    assert stats.sumsq == pytest.approx(81 + 0.01 + 1 + 4)
    # The histogram times them too, so report's percentiles cover the evicted ones.
    assert stats.histogram == Histogram.of([9.0, 0.1, 1.0, 2.0])


def test_eviction_on_the_program_thread_does_no_bucketing(
    recorders: List[HarvestRecorder],
) -> None:
    """Records evicted by a full buffer (on the recording thread) reach their histogram as
    values handed over, bucketed only when a reporter reads it."""
    blocking = BlockingReporter()
    rec = _make(recorders, [blocking], buffer_size=2)
    rec.record(_record(name="warmup"))
    rec._wake.set()
    assert blocking.entered.wait(5)
    for duration in (0.5, 0.25, 0.125, 4.0):
        rec.record(_record(duration))
    evicted = rec._evicted[("app", "jobs:run", "Function")][6]
    assert evicted._counts == {} and evicted._pending  # handed over, not bucketed
    blocking.release.set()
    assert rec.flush(5.0)


def test_failing_reporter_is_isolated_and_logged_once(
    recorders: List[HarvestRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    """A reporter that raises neither stops the others nor logs more than once."""
    failing, memory = FailingReporter(), MemoryReporter()
    rec = _make(recorders, [failing, memory])
    caplog.set_level(logging.WARNING, logger="tasktrace")
    for _ in range(3):
        rec.record(_record())
        assert rec.flush(5.0) is False
    assert failing.calls == 3
    assert len(memory.records) == 3
    messages = [r.getMessage() for r in caplog.records if "collector on fire" in r.getMessage()]
    assert len(messages) == 1
    assert rec.drop_totals() == {"failing:export_failed": 3}
    # Failures are reported in later batches so the store can keep them.
    assert memory.drops().get("failing:export_failed", 0) >= 2


def test_flush_timeout_with_hanging_reporter(recorders: List[HarvestRecorder]) -> None:
    """flush() and shutdown() return False once their timeout passes, however long export hangs."""
    blocking = BlockingReporter()
    rec = _make(recorders, [blocking])
    rec.record(_record())
    started = time.monotonic()
    assert rec.flush(0.3) is False
    flushed = time.monotonic()
    assert rec.shutdown(0.3) is False
    assert flushed - started >= 0.25  # each waited for its timeout, not less
    assert time.monotonic() - flushed >= 0.25
    assert time.monotonic() - started < 2.0
    blocking.release.set()


def test_flush_without_records_is_immediate(recorders: List[HarvestRecorder]) -> None:
    """A recorder that never recorded flushes at once and starts no thread."""
    rec = _make(recorders, [MemoryReporter()])
    assert rec.flush(1.0) is True
    assert rec._thread is None


def test_records_after_shutdown_are_counted(recorders: List[HarvestRecorder]) -> None:
    """After shutdown, records are not delivered but counted as dropped."""
    memory = MemoryReporter()
    rec = _make(recorders, [memory])
    rec.record(_record())
    assert rec.shutdown(5.0)
    rec.record(_record())
    assert rec.drop_totals() == {"after_shutdown": 1}
    assert len(memory.records) == 1


def test_configure_changes_buffer_size(recorders: List[HarvestRecorder]) -> None:
    """configure() applies a new buffer size to later records."""
    blocking = BlockingReporter()
    rec = _make(recorders, [blocking], buffer_size=1000)
    rec.record(_record())
    rec._wake.set()
    assert blocking.entered.wait(5)
    rec.configure(Settings(harvest_interval=60.0, buffer_size=5))
    for _ in range(20):
        rec.record(_record())
    assert len(rec._buffer) == 5
    blocking.release.set()


def test_exit_flush_is_bounded_and_warns(
    recorders: List[HarvestRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    """The exit delivery waits at most shutdown_timeout and says what was not delivered."""
    blocking = BlockingReporter()
    rec = _make(recorders, [blocking], shutdown_timeout=0.3)
    rec.record(_record())
    caplog.set_level(logging.WARNING, logger="tasktrace")
    recorder_mod._reset_for_tests()
    started = time.monotonic()
    recorder_mod._exit_flush_all()
    assert 0.25 <= time.monotonic() - started < 1.5  # it did wait for the delivery
    assert any("did not finish" in r.getMessage() for r in caplog.records)
    blocking.release.set()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_starts_empty_and_nothing_is_sent_twice(
    recorders: List[HarvestRecorder], tmp_path: object
) -> None:
    """A forked child has an empty buffer; parent and child records each arrive once."""
    db = os.path.join(str(tmp_path), "fork.db")
    rec = HarvestRecorder(
        Settings(harvest_interval=60.0, shutdown_timeout=5.0),
        reporter_factory=lambda s: [SqliteReporter(path=db)],
        install_process_hooks=False,
    )
    recorders.append(rec)
    for _ in range(5):
        rec.record(_record(name="parent"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read_end)
            empty = len(rec._buffer) == 0 and rec._thread is None and not rec.drop_totals()
            os.write(write_end, b"empty" if empty else b"not-empty")
            for _ in range(3):
                rec.record(_record(name="child"))
            status = 0
        finally:
            # The os._exit wrapper installed in forked children delivers before exiting.
            os._exit(status)
    os.close(write_end)
    assert os.read(read_end, 100) == b"empty"
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert rec.flush(5.0)
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT name, pid, SUM(count) FROM transaction_blocks GROUP BY name, pid"
    ).fetchall()
    calls = dict(conn.execute("SELECT name, SUM(count) FROM metrics GROUP BY name").fetchall())
    conn.close()
    assert sorted(rows) == sorted([("child", pid, 3), ("parent", os.getpid(), 5)])
    assert calls == {"child": 3, "parent": 5}


def test_harvest_thread_exports_are_never_instrumented() -> None:
    """A reporter calling instrumented code from the harvest thread records nothing."""
    import tasktrace
    from tasktrace._state import STATE

    @tasktrace.background_task()
    def instrumented_send() -> None:
        pass

    class CallsInstrumented(MemoryReporter):
        def export(self, batch: Batch) -> ExportResult:
            instrumented_send()
            return super().export(batch)

    reporter = CallsInstrumented()
    recorder = HarvestRecorder(
        Settings(harvest_interval=60.0), reporters=[reporter], install_process_hooks=False
    )
    STATE.set_recorder(recorder)
    try:
        instrumented_send()  # one task from the program itself
        assert recorder.flush(5.0)
        assert recorder.flush(5.0)  # a second harvest would carry any export-made task
    finally:
        recorder.shutdown(1.0)
        STATE.set_recorder(None)
    names = [r.name for r in reporter.records]
    assert len(names) == 1


def test_huge_intervals_set_in_code_still_deliver(recorders: List[HarvestRecorder]) -> None:
    """Settings built in code skip validation: a harvest_interval and timeouts past
    threading.TIMEOUT_MAX neither kill the harvest thread nor lose the exit delivery."""
    memory = MemoryReporter()
    rec = _make(recorders, [memory], harvest_interval=1e308, shutdown_timeout=1e10)
    rec.record(_record())
    time.sleep(0.2)
    assert rec._thread is not None and rec._thread.is_alive()
    assert rec.flush(1e10) is True
    rec.record(_record())
    recorder_mod._reset_for_tests()
    recorder_mod._exit_flush_all()
    assert len(memory.records) == 2


# -- the ledger: delivered + said dropped + pending = recorded ------------------------------


class KeepingReporter:
    """Keeps every batch while ``locked`` (as SQLite does under another writer's lock) and
    answers with the counts of transactions it holds."""

    name = "keeper"

    def __init__(self) -> None:
        self.locked = True
        self.held = 0
        self.delivered = 0

    def _write(self) -> ExportResult:
        if self.locked:
            return ExportResult(False, retryable=True, kept=self.held, reason="locked")
        written, self.held = self.held, 0
        self.delivered += written
        return ExportResult(True, exported=written)

    def export(self, batch: Batch) -> ExportResult:
        self.held += len(batch.records)
        return self._write()

    def force_flush(self, timeout: Optional[float] = None) -> ExportResult:
        return self._write()

    def shutdown(self, timeout: Optional[float] = None) -> Optional[ExportResult]:
        result = self._write()
        if self.held:
            gone, self.held = self.held, 0
            return ExportResult(False, dropped=gone, reason="locked")
        return result


def _exit_lines(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if "were not delivered" in r.getMessage()]


def test_kept_transactions_are_pending_until_written(recorders: List[HarvestRecorder]) -> None:
    """What a reporter keeps for a later harvest is pending: flush() says False and
    pending() counts it, until it is written."""
    keeper = KeepingReporter()
    rec = _make(recorders, [keeper])
    for _ in range(7):
        rec.record(_record())
    assert rec.flush(2.0) is False
    assert rec.pending() == 7
    keeper.locked = False
    assert rec.flush(2.0) is True
    assert rec.pending() == 0 and keeper.delivered == 7


def test_kept_batches_are_retried_by_a_harvest_with_nothing_new(
    recorders: List[HarvestRecorder],
) -> None:
    """A periodic harvest with no new records still gives a reporter's kept batch its
    chance (the program may have gone quiet)."""
    keeper = KeepingReporter()
    rec = _make(recorders, [keeper], harvest_interval=0.05)
    rec.record(_record())
    deadline = time.monotonic() + 5
    while keeper.held == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    keeper.locked = False
    while rec.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert keeper.delivered == 1 and rec.pending() == 0


def test_exit_says_what_a_reporter_could_not_deliver_with_its_reason(
    recorders: List[HarvestRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    """Kept until the end and given up on at shutdown: one exit line gives the count, the
    total and the reason; nothing is delivered twice or lost unsaid."""
    keeper = KeepingReporter()
    rec = _make(recorders, [keeper], shutdown_timeout=0.5)
    for _ in range(5):
        rec.record(_record())
    assert rec.flush(1.0) is False  # kept
    for _ in range(3):
        rec.record(_record())
    caplog.set_level(logging.WARNING, logger="tasktrace")
    recorder_mod._reset_for_tests()
    recorder_mod._exit_flush_all()
    pid = os.getpid()
    assert _exit_lines(caplog) == [
        f"tasktrace: 8 of 8 transactions of process {pid} were not delivered to keeper "
        "(keeper:locked: 8)"
    ]
    assert rec.drop_totals() == {"keeper:locked": 8}
    assert rec.pending() == 0


def test_exit_counts_each_transaction_once_per_reporter(
    recorders: List[HarvestRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    """One reporter fails at once, the other hangs past the exit budget: each says every
    transaction once (dropped, or pending at the deadline), never both."""
    failing, blocking = FailingReporter(), BlockingReporter()
    rec = _make(recorders, [failing, blocking], shutdown_timeout=0.3)
    for _ in range(5):
        rec.record(_record())
    caplog.set_level(logging.WARNING, logger="tasktrace")
    recorder_mod._reset_for_tests()
    recorder_mod._exit_flush_all()
    blocking.release.set()
    pid = os.getpid()
    assert sorted(_exit_lines(caplog)) == [
        f"tasktrace: 5 of 5 transactions of process {pid} were not delivered to blocking "
        "(shutdown_timeout: 5)",
        f"tasktrace: 5 of 5 transactions of process {pid} were not delivered to failing "
        "(failing:export_failed: 5)",
    ]


class MetricsReporter(MemoryReporter):
    """A memory reporter that also stands for the metrics (as SQLite does)."""

    stores_metrics = True


def test_evicted_records_are_delivered_through_the_metrics_or_said_lost(
    recorders: List[HarvestRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    """A full buffer: a reporter that stores the exact metrics delivers every call (only
    rows are missing, said on their own line); one that takes only records is told the
    evicted ones were not delivered to it, exactly."""
    with_metrics, records_only = MetricsReporter(name="metrics"), MemoryReporter()
    rec = _make(recorders, [with_metrics, records_only], buffer_size=100)
    rec._wake_early = lambda: None  # type: ignore[method-assign]  # the buffer overflows
    for _ in range(1000):
        rec.record(_record())
    evicted = rec.drop_totals()["buffer_full"]
    assert evicted >= 900
    caplog.set_level(logging.WARNING, logger="tasktrace")
    recorder_mod._reset_for_tests()
    recorder_mod._exit_flush_all()
    pid = os.getpid()
    assert sum(s.calls for s in with_metrics.metrics().values()) == 1000
    assert len(records_only.records) == 1000 - evicted
    assert _exit_lines(caplog) == [
        f"tasktrace: {evicted} of 1000 transactions of process {pid} were not delivered "
        f"to memory (buffer_full: {evicted})"
    ]
    rows = [r.getMessage() for r in caplog.records if "only in the metrics" in r.getMessage()]
    assert len(rows) == 1 and f"buffer_full: {evicted}" in rows[0]


class SilentReporter(MemoryReporter):
    """Answers without counts, as a minimal plugin might."""

    def export(self, batch: Batch) -> ExportResult:
        super().export(batch)
        return ExportResult(True)


def test_answers_without_counts_are_made_to_add_up(recorders: List[HarvestRecorder]) -> None:
    """A reporter that says only "success" delivered everything it was given."""
    rec = _make(recorders, [SilentReporter()])
    for _ in range(4):
        rec.record(_record())
    assert rec.flush(2.0) is True
    assert rec.pending() == 0
    assert rec.undelivered() == {"memory": (4, {}, 0)}


class GatedReporter:
    """Commits through the batch's CommitGate, ``wait_before`` or ``wait_after`` the
    commit (a write that ends just as the exit budget does)."""

    name = "gated"

    def __init__(self, wait_before: float = 0.0, wait_after: float = 0.0) -> None:
        self.wait_before, self.wait_after = wait_before, wait_after
        self.stored: List[TransactionRecord] = []
        self.done = threading.Event()

    def export(self, batch: Batch) -> ExportResult:
        time.sleep(self.wait_before)
        assert batch.gate is not None
        written = batch.gate.commit(self.name, lambda: self.stored.extend(batch.records))
        time.sleep(self.wait_after)
        self.done.set()
        if not written:
            return ExportResult(False, retryable=True, kept=len(batch.records))
        return ExportResult(True, exported=len(batch.records))

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        return True

    def shutdown(self, timeout: Optional[float] = None) -> None:
        pass


@pytest.mark.parametrize("late", ["commit", "answer"])
def test_a_write_that_ends_with_the_exit_budget_is_said_as_it_went(
    recorders: List[HarvestRecorder], caplog: pytest.LogCaptureFixture, late: str
) -> None:
    """A commit that would come after the exit warning is refused (said lost, not
    stored); one that came before it, but whose answer is late, is not said lost."""
    gated = GatedReporter(**({"wait_before": 1.0} if late == "commit" else {"wait_after": 1.0}))
    rec = _make(recorders, [gated], shutdown_timeout=0.4)
    for _ in range(5):
        rec.record(_record())
    caplog.set_level(logging.WARNING, logger="tasktrace")
    recorder_mod._reset_for_tests()
    recorder_mod._exit_flush_all()
    assert gated.done.wait(5)
    lines = _exit_lines(caplog)
    if late == "commit":
        assert gated.stored == [] and len(lines) == 1 and "5 of 5" in lines[0]
    else:
        assert len(gated.stored) == 5 and lines == []
