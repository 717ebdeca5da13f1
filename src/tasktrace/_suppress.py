"""The context key that turns instrumentation off in tasktrace's own threads.

The harvest thread (and the helper that delivers on SIGTERM) call
:func:`suppress_instrumentation` first, so that exporting never creates transactions, even
if a user lists, say, ``httpx:Client.send`` as a target. Like OpenTelemetry's
``_SUPPRESS_INSTRUMENTATION_KEY``, it is a context variable: it holds in that thread (and
in asyncio tasks created from it) and nowhere else. A leaf module, so the recorder need
not import the transaction code to use it.
"""

from __future__ import annotations

from contextvars import ContextVar

#: True where transactions must not be recorded. Read once per transaction, at its start.
SUPPRESSED: ContextVar[bool] = ContextVar("tasktrace_suppressed", default=False)


def suppress_instrumentation() -> None:
    """Record nothing from now on in the current context."""
    SUPPRESSED.set(True)


def instrumentation_suppressed() -> bool:
    """Whether :func:`suppress_instrumentation` was called in the current context."""
    return SUPPRESSED.get()
