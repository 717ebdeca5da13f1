"""The agent's global state: settings, the enabled flag and the recorder, in one object.

Every instrumented call reads this object, so it is kept flat: the hot path does a couple of
attribute reads (``STATE.enabled``, ``STATE.record``) and nothing else. All mutation goes
through methods that hold ``STATE.lock``; ``_reset_for_tests()`` puts it back as a fresh
process would have it.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from tasktrace import _fork
from tasktrace.config import Settings

if TYPE_CHECKING:
    from tasktrace.recorder import Recorder
    from tasktrace.records import TransactionRecord


def _env_settings() -> Settings:
    """Settings for a program that never calls ``initialize()``: defaults plus variables.

    Reading the variables is cheap and imports nothing heavy; the config file is read only
    by ``initialize()`` (or the bootstrap, which calls it).
    """
    try:
        from tasktrace.config import settings_from_environment

        # Under the launcher the bootstrap's initialize() reports bad variables in its one
        # stderr line; warning here as well would print them twice.
        launched = "TASKTRACE_BOOTSTRAP_PYTHON" in os.environ
        settings: Settings = settings_from_environment(os.environ, warn=not launched)
        return settings
    except Exception:  # a bad variable must not break an import of tasktrace  # noqa: BLE001
        return Settings()


class _AgentState:
    """All mutable global state of the agent."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: Settings = _env_settings()
        #: Read on every instrumented call; mirrors ``settings.enabled``.
        self.enabled: bool = self.settings.enabled
        #: Mirrors ``settings.cpu_time``.
        self.cpu_time: bool = self.settings.cpu_time
        #: Read at every transaction's start: whether it must call
        #: :meth:`transaction_started` (CPU time is measured, or the recorder's harvest
        #: thread is not running yet in this process). Off, a start costs nothing more.
        self.start_hook: bool = True
        self.initialized = False
        #: The recorder in use, created on the first record (None until then).
        self.recorder: Optional[Recorder] = None
        #: Called with each finished record. Until a recorder exists it is
        #: ``_record_first``, which creates one; then it is the recorder's own ``record``.
        self.record: Callable[[TransactionRecord], None] = self._record_first

    @property
    def forked_child(self) -> bool:
        """True in a process made by os.fork() from one where tasktrace was imported
        (:data:`tasktrace._fork.forked_child`)."""
        return _fork.forked_child

    def transaction_started(self, txn: Any) -> None:
        """A transaction began while :attr:`start_hook` was on: measure its CPU clock if
        asked, and make sure the harvest thread runs, so that a task still running one
        harvest interval later is seen as running (SPEC section 7) even when it is the
        first of its process."""
        if self.cpu_time:
            txn._measure_cpu()
        try:
            recorder = self.get_recorder()
            ensure_started = getattr(recorder, "ensure_started", None)
            if ensure_started is not None:
                ensure_started()
        except Exception:  # noqa: BLE001 - never raise into the instrumented call
            pass
        self.start_hook = self.cpu_time

    def _record_first(self, record: TransactionRecord) -> None:
        """Create the default recorder on the first finished transaction, then record."""
        recorder = self.get_recorder()
        recorder.record(record)

    def get_recorder(self) -> Recorder:
        """The recorder in use, creating the default one from the settings if needed."""
        with self.lock:
            if self.recorder is None:
                from tasktrace.recorder import create_recorder

                self.set_recorder(create_recorder(self.settings))
            assert self.recorder is not None
            return self.recorder

    def set_recorder(self, recorder: Optional[Recorder]) -> None:
        """Route finished records to ``recorder`` (None: create the default one lazily)."""
        with self.lock:
            self.recorder = recorder
            self.record = self._record_first if recorder is None else recorder.record
            self.start_hook = True

    def apply_settings(self, settings: Settings) -> None:
        """Make ``settings`` current; an existing recorder is told about them."""
        with self.lock:
            self.settings = settings
            self.enabled = settings.enabled
            self.cpu_time = settings.cpu_time
            self.start_hook = True
            recorder = self.recorder
        if recorder is not None:
            recorder.configure(settings)

    def _reset_for_tests(self) -> None:
        """Forget everything: settings from the environment, no recorder, not initialized."""
        with self.lock:
            recorder = self.recorder
            self.__init__()  # type: ignore[misc]
        if recorder is not None:
            try:
                recorder.shutdown(0.0)
            except Exception:  # noqa: BLE001 - retiring the old recorder must not break reconfiguring
                pass


STATE = _AgentState()


def _after_fork_in_child() -> None:
    # The child's recorder starts its own harvest thread at the next transaction.
    STATE.start_hook = True


_fork.register(after_in_child=_after_fork_in_child)
