"""tasktrace's own threads: started with asynchronous signals blocked, so that the kernel
hands every signal to a thread of the program, and the waits they make bounded."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Optional, Set

# (Imported here, not lazily in the threads that use it: a fork while another thread is
# importing a module leaves the child with a half-initialised module it can never import.)

if TYPE_CHECKING:
    pass


#: The name of the harvest thread, so that it is easy to spot in thread dumps.
HARVEST_THREAD_NAME = "tasktrace-harvest"


#: Signals that are never synchronous (a fault of the thread itself): these are blocked
#: in tasktrace's threads, so that the kernel hands them to a thread of the program.
_ASYNC_SIGNALS: Optional[Set[signal.Signals]] = (
    set(signal.valid_signals())
    - {
        getattr(signal, name)
        for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT")
        if hasattr(signal, name)
    }
    if hasattr(signal, "pthread_sigmask")
    else None
)


def _start_without_signals(thread: threading.Thread) -> None:
    """Start ``thread`` with asynchronous signals blocked in it.

    CPython runs Python signal handlers in the main thread only, and a signal is handed by
    the kernel to any thread that does not block it. Had it gone to one of our threads
    while the main thread waited in a blocking C call (a ``multiprocessing`` queue's lock,
    say), the main thread would not wake up to run the handler -- for a pool worker
    terminated with SIGTERM, that means never exiting, and its parent hanging in
    ``Pool.terminate()``. A new thread inherits its creator's signal mask, so the signals
    are blocked around ``start()``: there is no window in which the thread takes one.
    """
    if _ASYNC_SIGNALS is None:
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _settling_margin(budget: float) -> float:
    """How much sooner than a flush or exit budget ends the reporters must give up.

    The waiting thread reads the ledger when the budget ends; reporters that stop a
    little before (a tenth of the budget, at most a quarter of a second) have entered
    their answers by then, so what is said matches what happened.
    """
    return min(0.25, 0.1 * max(0.0, budget))


def _wait_seconds(seconds: float) -> float:
    """``seconds``, at most ``threading.TIMEOUT_MAX`` (a longer wait raises OverflowError)."""
    return min(seconds, threading.TIMEOUT_MAX)


def is_harvest_thread() -> bool:
    """True on a tasktrace harvest thread (whose work must never be instrumented)."""
    return threading.current_thread().name == HARVEST_THREAD_NAME
