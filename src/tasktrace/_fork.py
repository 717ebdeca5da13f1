"""The one at-fork registration of tasktrace, and the process facts it keeps current.

:data:`forked_child` says whether this process was made by ``os.fork()`` from one where
tasktrace was imported (a recorder created there must deliver before ``os._exit``:
fork-per-job workers), and :data:`pid` is this process's id, refreshed in forked children.

Modules that keep per-process state (the forked-child mark, the random source, the pid the
hot path uses, the recorder's threads and locks) register their hooks here rather than with
:func:`os.register_at_fork` each, so that they run in a known order (the order the modules
were imported in, which is their dependency order; ``before`` hooks in reverse) and an
error in one does not stop the others. A leaf module: it imports nothing of tasktrace.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

Hook = Callable[[], None]

#: True in a process made by os.fork() from one where tasktrace was imported.
forked_child = False
#: This process's id (read where calling os.getpid() each time would cost).
pid = os.getpid()

_before: List[Hook] = []
_after_in_parent: List[Hook] = []
_after_in_child: List[Hook] = []


def register(
    *,
    before: Optional[Hook] = None,
    after_in_parent: Optional[Hook] = None,
    after_in_child: Optional[Hook] = None,
) -> None:
    """Run the given hooks around every ``os.fork()`` of this process."""
    if before is not None:
        _before.insert(0, before)
    if after_in_parent is not None:
        _after_in_parent.append(after_in_parent)
    if after_in_child is not None:
        _after_in_child.append(after_in_child)


def _run(hooks: List[Hook]) -> None:
    # Every hook runs even if one fails; the first failure is then raised, and Python
    # reports it ("Exception ignored in ...") as it does for any at-fork hook.
    failure: Optional[BaseException] = None
    for hook in list(hooks):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - every at-fork callback runs; the first failure is re-raised after
            if failure is None:
                failure = exc
    if failure is not None:
        raise failure


def _before_fork() -> None:
    _run(_before)


def _after_fork_in_parent() -> None:
    _run(_after_in_parent)


def _after_fork_in_child() -> None:
    global forked_child, pid
    forked_child = True
    pid = os.getpid()
    _run(_after_in_child)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
