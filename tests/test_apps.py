"""Tests for tasktrace.apps: application handles and register_application."""

from __future__ import annotations

import time
from typing import List

import pytest

import tasktrace
from tasktrace import Application, application, background_task, register_application
from tasktrace._state import STATE
from tasktrace.records import TransactionRecord
from tasktrace.testing import MemoryRecorder

Records = List[TransactionRecord]


def test_same_name_same_handle() -> None:
    """application(name) returns the same handle for the same name."""
    assert application("a") is application("a")
    assert application() is application(None)
    assert application("a") is not application("b")
    assert application("a") == Application("a")
    assert hash(application("a")) == hash(Application("a"))


def test_handle_names() -> None:
    """A handle knows its explicit name and the name transactions will carry."""
    assert application("jobs").name == "jobs"
    assert application("jobs").effective_name == "jobs"
    assert application().name is None
    assert application().effective_name == "Python Application"
    assert "jobs" in repr(application("jobs"))


def test_default_handle_follows_configured_app_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default handle's effective name comes from TASKTRACE_APP_NAME when set."""
    monkeypatch.setenv("TASKTRACE_APP_NAME", "from-env")
    STATE._reset_for_tests()
    assert application().effective_name == "from-env"


def test_application_name_must_be_a_string() -> None:
    """A non-string application name is a TypeError."""
    with pytest.raises(TypeError):
        application(3)  # type: ignore[arg-type]


def test_register_application_returns_at_once_and_drops_nothing(records: Records) -> None:
    """register_application(timeout=...) returns immediately; tasks before and after count."""

    @background_task(application="reg")
    def job(i: int) -> int:
        return i

    job(1)
    started = time.monotonic()
    handle = register_application("reg", timeout=30.0)
    assert time.monotonic() - started < 5.0
    job(2)
    assert handle is application("reg")
    assert handle.active
    assert handle.enabled
    assert [(r.app, r.name) for r in records] == [("reg", tasktrace.callable_name(job))] * 2


def test_register_application_activates_default_recorder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registering starts delivery: the default recorder exists afterwards."""
    monkeypatch.setenv("TASKTRACE_REPORTER", "memory")
    STATE._reset_for_tests()
    assert STATE.recorder is None
    handle = register_application()
    assert handle.active
    assert STATE.recorder is not None


def test_register_application_keeps_an_existing_recorder() -> None:
    """Registering with a recorder already in place keeps that recorder."""
    recorder = MemoryRecorder()
    STATE.set_recorder(recorder)  # type: ignore[arg-type]
    register_application()
    assert STATE.recorder is recorder


def test_register_application_survives_recorder_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If starting delivery fails, register_application still returns the handle."""

    def explode() -> None:
        raise RuntimeError("no recorder")

    monkeypatch.setattr(STATE, "get_recorder", explode)
    assert register_application("x") is application("x")


def test_disabled_handle_does_not_start_delivery() -> None:
    """With the agent disabled, activating creates no recorder."""
    STATE.enabled = False
    handle = register_application("off")
    assert not handle.enabled
    assert not handle.active


def test_handle_as_application_argument(records: Records) -> None:
    """A registered handle passed as application= names the transaction's app."""
    handle = register_application("handled")
    with tasktrace.BackgroundTask(handle, "t"):
        pass
    assert records[0].app == "handled"
