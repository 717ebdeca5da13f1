"""Tests for tasktrace.blocks: the BackgroundTask and WebTransaction context managers."""

from __future__ import annotations

from typing import List

import pytest

from tasktrace import (
    BackgroundTask,
    WebTransaction,
    current_transaction,
)
from tasktrace._state import STATE
from tasktrace.records import TransactionRecord

Records = List[TransactionRecord]


def test_web_transaction_alone_stays_web(records: Records) -> None:
    """A web transaction without a task inside is recorded as non-background."""
    with WebTransaction(name="/health"):
        pass
    assert [(r.name, r.group, r.background) for r in records] == [("/health", "Uri", False)]


def test_background_task_context_manager(records: Records) -> None:
    """``with BackgroundTask(app, name, group=...)`` records a task; name defaults to caller."""
    with BackgroundTask("app", "nightly", group="Task") as task:
        assert task.transaction is current_transaction()
    with BackgroundTask():
        pass
    assert [(r.app, r.name, r.group) for r in records] == [
        ("app", "nightly", "Task"),
        ("Python Application", f"{__name__}:test_background_task_context_manager", "Function"),
    ]


def test_background_task_context_manager_records_and_reraises(records: Records) -> None:
    """An exception leaving the block is recorded and propagates unchanged."""
    boom = OSError("disk")
    with pytest.raises(OSError) as info, BackgroundTask(name="cm"):
        raise boom
    assert info.value is boom
    assert [e.type for e in records[0].errors] == ["builtins:OSError"]


def test_background_task_context_manager_when_disabled(records: Records) -> None:
    """With the agent disabled the context manager runs its block and records nothing."""
    STATE.enabled = False
    with BackgroundTask(name="off") as task:
        assert task.transaction is None
        assert current_transaction() is None
    with WebTransaction(name="/off"):
        pass
    assert records == []
