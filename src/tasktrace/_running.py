"""What the transaction layer and the recorder share about running tasks (SPEC section 7),
so that neither imports the other: the transaction layer installs :data:`scanner`, which
lists the open background transactions; the harvest thread calls it. Target application
enters the ``max_duration`` of each task name in :data:`MAX_DURATIONS`."""

from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional


class OpenTask(NamedTuple):
    """An open background transaction, as the harvest thread sees it."""

    app: str
    name: str
    group: str
    thread_id: int
    trace_id: int
    span_id: int
    #: Epoch seconds at which it started.
    start: float
    #: Seconds since it started.
    elapsed: float


#: Lists this process's open background transactions; set by :mod:`tasktrace.transaction`.
scanner: Optional[Callable[[], List[OpenTask]]] = None

#: ``max_duration`` in seconds per task name, entered when a target that sets one is
#: applied (its name, or each name a glob resolves to); the harvest thread reads it.
MAX_DURATIONS: Dict[str, float] = {}


def _reset_for_tests() -> None:
    """Forget the limits entered by applied targets."""
    MAX_DURATIONS.clear()
