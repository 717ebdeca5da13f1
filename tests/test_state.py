"""tasktrace._state: the agent's one global state object, as a fresh process has it."""

from __future__ import annotations

import os
from typing import List, Optional

import pytest

import tasktrace
from tasktrace._state import STATE
from tasktrace.config import Settings
from tasktrace.recorder import HarvestRecorder
from tasktrace.testing import MemoryRecorder


class _SpyRecorder(MemoryRecorder):
    """A MemoryRecorder that also remembers what configure() and shutdown() were given."""

    def __init__(self) -> None:
        super().__init__()
        self.configured: List[Settings] = []
        self.shutdowns: List[Optional[float]] = []

    def configure(self, settings: Settings) -> None:
        self.configured.append(settings)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        self.shutdowns.append(timeout)
        return True


@tasktrace.background_task(name="state-job")
def _job() -> int:
    return 1


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without initialize(), the state holds the defaults plus TASKTRACE_* variables."""
    monkeypatch.setenv("TASKTRACE_APP_NAME", "from-env")
    monkeypatch.setenv("TASKTRACE_ENABLED", "false")
    STATE._reset_for_tests()
    assert STATE.settings.app_name == "from-env"
    assert STATE.enabled is False
    assert STATE.initialized is False


def test_a_bad_variable_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable that does not parse leaves its setting at the default; nothing raises."""
    monkeypatch.setenv("TASKTRACE_HARVEST_INTERVAL", "soon")
    STATE._reset_for_tests()
    assert STATE.settings.harvest_interval == Settings().harvest_interval


def test_first_record_creates_the_default_recorder(monkeypatch: pytest.MonkeyPatch) -> None:
    """No recorder exists until a transaction finishes; then one is made from the settings."""
    monkeypatch.setenv("TASKTRACE_REPORTER", "memory")
    STATE._reset_for_tests()
    assert STATE.recorder is None
    assert _job() == 1
    recorder = STATE.recorder
    assert isinstance(recorder, HarvestRecorder)
    assert STATE.get_recorder() is recorder  # made once, then reused


def test_set_recorder_routes_records_and_none_goes_back_to_lazy() -> None:
    """set_recorder(r) sends finished transactions to r; set_recorder(None) undoes it."""
    recorder = _SpyRecorder()
    STATE.set_recorder(recorder)  # type: ignore[arg-type]
    _job()
    assert [r.name for r in recorder.records] == ["state-job"]
    STATE.set_recorder(None)
    assert STATE.recorder is None
    replacement = _SpyRecorder()
    STATE.get_recorder = lambda: replacement  # type: ignore[assignment, method-assign, return-value]
    try:
        _job()
    finally:
        del STATE.get_recorder
    assert len(recorder.records) == 1 and len(replacement.records) == 1


def test_apply_settings_updates_the_hot_path_flags_and_tells_the_recorder() -> None:
    """apply_settings() changes enabled and cpu_time at once and passes the settings on."""
    recorder = _SpyRecorder()
    STATE.set_recorder(recorder)  # type: ignore[arg-type]
    settings = Settings(enabled=False, cpu_time=True)
    STATE.apply_settings(settings)
    assert (STATE.enabled, STATE.cpu_time) == (False, True)
    assert STATE.settings is settings
    assert recorder.configured == [settings]
    assert _job() == 1
    assert recorder.records == []  # disabled: the call runs, nothing is recorded


def test_reset_shuts_the_recorder_down_without_waiting() -> None:
    """_reset_for_tests() stops the recorder in use (timeout 0) and forgets everything."""
    recorder = _SpyRecorder()
    STATE.set_recorder(recorder)  # type: ignore[arg-type]
    STATE.initialized = True
    STATE._reset_for_tests()
    assert recorder.shutdowns == [0.0]
    assert STATE.recorder is None and STATE.initialized is False


def test_reset_survives_a_recorder_whose_shutdown_raises() -> None:
    """A recorder that raises in shutdown() does not make the reset fail."""

    class Broken(_SpyRecorder):
        def shutdown(self, timeout: Optional[float] = None) -> bool:
            raise RuntimeError("broken")

    STATE.set_recorder(Broken())  # type: ignore[arg-type]
    STATE._reset_for_tests()
    assert STATE.recorder is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads
def test_forked_child_is_marked_and_the_parent_is_not() -> None:
    """In a child made by os.fork() forked_child is True, even across a reset; not in the parent."""
    assert STATE.forked_child is False
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 0
        try:
            if STATE.forked_child is not True:
                code = 1
            STATE._reset_for_tests()
            if STATE.forked_child is not True:
                code = 2
        except BaseException:  # noqa: BLE001 - any failure in the child is its exit status
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert STATE.forked_child is False
