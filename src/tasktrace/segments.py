"""Function traces: timed segments nested inside the current transaction.

(Named `segments` rather than `function_trace` so the module does not shadow the
`tasktrace.function_trace` decorator on the package.)

The context manager lives here; its decorator and wrapper forms are in :mod:`tasktrace.api`.
Segments are kept on the transaction (see :class:`tasktrace.transaction.Segment`); each
records its name, group, start, duration and parent, so the transaction's exclusive time is
its duration minus its direct children's.
"""

from __future__ import annotations

from typing import Optional

from tasktrace._scopes import _Scope, open_trace_scope
from tasktrace.blocks import _ContextScope, caller_name

__all__ = ["FunctionTrace"]


class FunctionTrace(_ContextScope):
    """Time a block as a segment of the current transaction; a no-op outside one."""

    def __init__(self, name: Optional[str] = None, group: Optional[str] = None) -> None:
        self.name = str(name) if name is not None else caller_name()
        self.group = str(group) if group is not None else "Function"
        self._scope = None

    def _open(self) -> Optional[_Scope]:
        return open_trace_scope(self.name, self.group)
