"""The ``with``-block forms of the API: :class:`BackgroundTask` and :class:`WebTransaction`,
and the machinery they share with :class:`tasktrace.segments.FunctionTrace`.

Nothing here imports wrapt; the decorator and wrapper forms are in :mod:`tasktrace.api`.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Optional, Type

from tasktrace._logging import get_logger
from tasktrace._scopes import _Scope, open_task_scope, open_web_scope
from tasktrace.transaction import Transaction

_log = get_logger()


def caller_name(depth: int = 2) -> str:
    """``"module:function"`` of the code ``depth`` frames up, for unnamed context managers."""
    try:
        frame = sys._getframe(depth)
    except ValueError:  # pragma: no cover - shallower stack than expected
        return "<unknown>"
    code = frame.f_code
    qualname = getattr(code, "co_qualname", code.co_name)
    return f"{frame.f_globals.get('__name__', '?')}:{qualname}"


_NO_NAME = object()


def resolve_app(application: Any) -> Optional[str]:
    """An ``application=`` argument (None, a name or a handle) as a name or None (default)."""
    if application is None:
        return None
    if isinstance(application, str):
        return application
    name = getattr(application, "name", _NO_NAME)
    if name is None or isinstance(name, str):
        return name
    raise TypeError(
        f"application must be None, an app name or a handle from tasktrace.application(), "
        f"not {type(application).__name__}"
    )


class _ContextScope:
    """Shared machinery of the transaction and trace context managers."""

    _scope: Optional[_Scope]

    def _open(self) -> Optional[_Scope]:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Any:
        try:
            scope = self._scope = self._open()
            if scope is not None:
                scope.activate()
        except Exception:  # pragma: no cover - defensive  # noqa: BLE001
            self._scope = None
            _log.debug("tasktrace failed to open a scope", exc_info=True)
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        scope = self._scope
        if scope is not None:
            self._scope = None
            scope.deactivate()
            scope.close(exc)

    @property
    def transaction(self) -> Optional[Transaction]:
        """The transaction this block runs in (None when disabled or outside one)."""
        scope = self._scope
        return None if scope is None else scope.node.txn


class _TransactionBlock(_ContextScope):
    """A ``with`` block timed as a transaction: the shared shape of the two kinds below."""

    default_group = "Function"

    def __init__(
        self, application: Any = None, name: Optional[str] = None, group: Optional[str] = None
    ) -> None:
        self.app = resolve_app(application)
        # caller_name() looks two frames up: past this __init__, to the user's code.
        self.name = str(name) if name is not None else caller_name()
        self.group = str(group) if group is not None else self.default_group
        self._scope = None


class BackgroundTask(_TransactionBlock):
    """Time a block as a background task: ``with BackgroundTask(app, "nightly", "Task"):``.

    Takes ``(application=None, name=None, group=None)`` and follows the same nesting rules
    as :func:`~tasktrace.background_task`. ``name`` defaults to the function the block is
    in, ``group`` to ``"Function"``.
    """

    def _open(self) -> Optional[_Scope]:
        return open_task_scope(self.app, self.name, self.group)


class WebTransaction(_TransactionBlock):
    """Time a block as a web (non-background) transaction, e.g. a request handler.

    Takes ``(application=None, name=None, group="Uri")``. A background task started inside
    it turns it into a background task (SPEC 2, rule 2).
    """

    def __init__(
        self, application: Any = None, name: Optional[str] = None, group: Optional[str] = "Uri"
    ) -> None:
        super().__init__(application, caller_name() if name is None else name, group or "Uri")

    def _open(self) -> Optional[_Scope]:
        return open_web_scope(self.app, self.name, self.group)
