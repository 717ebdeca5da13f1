"""Scopes: what a wrapper or context manager opened (a transaction, a segment or both),
how it becomes current, and how it is closed.

Every form of the API goes through these: the generated wrappers of
:mod:`tasktrace._calls_importlib_bootstrap` (which inline the common case), the wrapt-path
wrappers of :mod:`tasktrace.wrappers` and the context managers of :mod:`tasktrace.blocks`
and :mod:`tasktrace.segments`. The nesting rules of SPEC 2 are decided here, once.
"""

from __future__ import annotations

from contextvars import Token
from typing import Optional

from tasktrace._logging import get_logger
from tasktrace._state import STATE
from tasktrace.transaction import (
    _CURRENT,
    OPEN,
    Node,
    Segment,
    Transaction,
    _perf_counter,
    is_error,
)

_log = get_logger()


class _Scope:
    """What one task or function trace opened: a new transaction, a segment, or both.

    ``node`` is what becomes current while the scope is active; ``txn`` is set only when
    the scope created the transaction (and so must finish it).
    """

    __slots__ = ("node", "token", "txn")

    #: Whether an exception leaving the scope is recorded as an error of the transaction.
    #: Tasks record theirs (SPEC 2, rule 3); a function trace does not, because its caller
    #: may handle the exception: an error counts only when it leaves the task, or when
    #: the code calls ``notice_error()``.
    records_errors = True

    def __init__(self, node: Node, txn: Optional[Transaction]) -> None:
        self.node = node
        self.txn = txn
        self.token: Optional[Token[Optional[Node]]] = None

    def activate(self) -> None:
        self.token = _CURRENT.set(self.node)

    def deactivate(self) -> None:
        token = self.token
        if token is not None:
            self.token = None
            try:
                _CURRENT.reset(token)
            except ValueError:
                # Reset from another context (a generator stepped elsewhere): restore the
                # parent node instead of failing the user's code.
                node = self.node
                _CURRENT.set(node.txn if isinstance(node, Segment) else None)

    def close(self, exc: Optional[BaseException]) -> None:
        """End the scope: record ``exc`` if it is an error, stop segment and transaction."""
        try:
            node = self.node
            if exc is not None and self.records_errors and is_error(exc):
                node.txn._record_exception(exc)
            if isinstance(node, Segment):
                node.duration = _perf_counter() - node.start
            txn = self.txn
            if txn is not None:
                txn._finish()
                OPEN.discard(txn)
        except Exception:  # pragma: no cover - defensive: never raise into user code  # noqa: BLE001
            _log.debug("tasktrace failed to close a scope", exc_info=True)


class _TraceScope(_Scope):
    """The scope of a function trace: like a task's, but it records no errors."""

    __slots__ = ()

    records_errors = False


def current_node() -> Optional[Node]:
    """The innermost active transaction or segment, ignoring finished transactions."""
    node = _CURRENT.get()
    if node is None or node.txn.finished:
        return None
    return node


def open_segment(node: Node, name: str, group: str) -> Optional[Segment]:
    """Start a segment under ``node``; None when the transaction's segment limit is reached."""
    txn = node.txn
    segments = txn.segments
    if segments is None:
        segments = txn.segments = []
    index = len(segments)
    if index >= STATE.settings.max_segments:
        txn._drop_segment()
        return None
    seg = Segment(txn, index, name, group, node.index, _perf_counter())
    segments.append(seg)
    return seg


def open_task_scope(app: Optional[str], name: str, group: str) -> Optional[_Scope]:
    """Open a background task (not yet active): a new transaction, or a segment when nested.

    Inside a background transaction no new transaction starts: the task becomes a segment
    of it. Inside a web transaction, that transaction becomes a background task with this
    task's name and group (its start time is kept) and the task is a segment of it.
    Returns None when the agent is disabled or the segment limit is reached.
    """
    if not STATE.enabled:
        return None
    node = current_node()
    if node is None:
        txn = Transaction(app, name, group, True)
        OPEN.add(txn)
        return _Scope(txn, txn)
    txn = node.txn
    if not txn.background:
        txn.background = True
        txn.name = name
        txn.group = group
    elif node is txn and txn._rare is not None and txn._rare.named_by_job:
        # A job system's job running a configured task: that call is the job, so it
        # opens no segment, and the target's name, group and application win over the
        # job system's defaults (SPEC 8).
        txn._rare.named_by_job = False
        txn.name = name
        txn.group = group
        if app is not None:
            txn.app = app
        return _Scope(txn, None)
    seg = open_segment(node, name, group)
    return None if seg is None else _Scope(seg, None)


def open_trace_scope(name: str, group: str) -> Optional[_Scope]:
    """Open a function trace (not yet active); None outside a transaction."""
    node = current_node()
    if node is None:
        return None
    seg = open_segment(node, name, group)
    return None if seg is None else _TraceScope(seg, None)


def open_web_scope(app: Optional[str], name: str, group: str) -> Optional[_Scope]:
    """Open a web transaction (not yet active); a segment when already inside one."""
    if not STATE.enabled:
        return None
    node = current_node()
    if node is None:
        txn = Transaction(app, name, group, False)
        OPEN.add(txn)
        return _Scope(txn, txn)
    seg = open_segment(node, name, group)
    return None if seg is None else _Scope(seg, None)
