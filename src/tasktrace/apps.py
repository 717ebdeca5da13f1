"""Application handles: the name a transaction reports under.

(Named `apps` so the module does not shadow the `tasktrace.application` function.)

tasktrace has no remote registration step: an application is just a name, resolved when
a transaction finishes. Handles exist so that code written for New Relic's API
(``application()``, ``register_application()``) works unchanged.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional

from tasktrace._state import STATE

_HANDLES: Dict[Optional[str], Application] = {}
_HANDLES_LOCK = threading.Lock()


class Application:
    """A handle for the application ``name`` (None: the configured app name)."""

    __slots__ = ("_name",)

    def __init__(self, name: Optional[str] = None) -> None:
        self._name = name

    @property
    def name(self) -> Optional[str]:
        """The explicit name, or None for "whatever app name is configured"."""
        return self._name

    @property
    def effective_name(self) -> str:
        """The name transactions will carry right now."""
        return self._name or STATE.settings.app_name

    @property
    def enabled(self) -> bool:
        """Whether the agent records anything."""
        return STATE.enabled

    @property
    def active(self) -> bool:
        """Whether delivery has started (a recorder exists)."""
        return STATE.recorder is not None

    def activate(self, timeout: Optional[float] = None) -> None:
        """Start delivery now instead of at the first transaction.

        ``timeout`` is accepted for compatibility with New Relic's API; activation is
        local and immediate, so nothing is waited for and no task is ever dropped because
        an application was not yet registered.
        """
        if STATE.enabled:
            STATE.get_recorder()

    def __repr__(self) -> str:
        return f"<tasktrace.Application {self.effective_name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Application) and other._name == self._name

    def __hash__(self) -> int:
        return hash(("tasktrace.Application", self._name))


def application(name: Optional[str] = None) -> Application:
    """The handle for application ``name`` (default: the configured app name)."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"application name must be a str or None, not {type(name).__name__}")
    with _HANDLES_LOCK:
        handle = _HANDLES.get(name)
        if handle is None:
            handle = _HANDLES[name] = Application(name)
        return handle


def register_application(
    name: Optional[str] = None, timeout: Optional[float] = None
) -> Application:
    """The handle for ``name``, activated (see :meth:`Application.activate`)."""
    handle = application(name)
    try:
        handle.activate(timeout)
    except Exception:  # starting delivery must never break the caller  # noqa: BLE001
        from tasktrace._logging import get_logger

        get_logger().warning(
            "tasktrace: could not start delivery for %r", handle.effective_name, exc_info=True
        )
    return handle


def _reset_for_tests() -> None:
    with _HANDLES_LOCK:
        _HANDLES.clear()
