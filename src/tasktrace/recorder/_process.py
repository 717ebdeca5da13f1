"""Process life: delivery at exit (``atexit``), on SIGTERM and SIGHUP, in
``multiprocessing`` children and before ``os._exit``, and the reset after ``os.fork()``."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Set, Tuple

from tasktrace import _fork
from tasktrace._logging import get_logger
from tasktrace._suppress import suppress_instrumentation
from tasktrace.config import Settings
from tasktrace.recorder._threads import _settling_margin, _start_without_signals, _wait_seconds

if TYPE_CHECKING:
    from types import FrameType


_log = get_logger()

# -- process hooks --------------------------------------------------------------------------

#: Every recorder alive in this process; the exit, signal and fork hooks walk it.
# Typed loosely on purpose: naming HarvestRecorder here, even for the type checker only,
# would make this module and recorder._harvest (which registers each recorder here) a
# circle; process life only calls the recorders' own exit, flush and fork methods.
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()

_hooks_lock = threading.Lock()
#: pid in which atexit/SIGTERM/multiprocessing hooks were installed (one set per process).
_hooks_pid = 0
_atexit_registered = False
#: (pid, deadline): the shared exit budget of this process, once an exit path began.
_exit_deadline: Optional[Tuple[int, float]] = None
#: The pid running an exit delivery right now (0: none), to detect re-entry.
_exiting_pid = 0
#: A SIGTERM (signum, frame) that arrived during an exit delivery, acted on after it.
_sigterm_pending: Optional[Tuple[int, Optional[FrameType]]] = None
#: The signals whose default action ends the process and that we deliver on first.
_EXIT_SIGNALS: Tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
#: The only one whose earlier Python handler we chain to (see _install_signal_handlers).
_CHAINED_SIGNALS = frozenset({signal.SIGTERM})
#: The program's handlers that ours replaced, by signal (callable: we chain to it).
_previous_handlers: Dict[int, Any] = {}
#: The signals our handler is installed for in this process's main thread.
_handled_signals: Set[int] = set()
#: How many times _on_sigterm has started in this process (the watcher looks).
_sigterm_calls = 0
#: The read end of this process's wake-up pipe (see _watch_signals); -1: none.
_wakeup_read = -1
_wakeup_write = -1
#: How long the watcher lets the main thread take to run the handler before nudging it.
SIGTERM_NUDGE_AFTER = 0.5
_real_os_exit: Callable[[int], Any] = os._exit


def _install_process_hooks(settings: Settings) -> None:
    """atexit, SIGTERM and multiprocessing hooks, once per process."""
    global _hooks_pid, _atexit_registered
    pid = os.getpid()
    with _hooks_lock:
        if _hooks_pid == pid:
            return
        _hooks_pid = pid
        if not _atexit_registered:
            # atexit registrations survive fork, so one is enough for parent and children.
            atexit.register(_at_exit)
            _atexit_registered = True
    _install_signal_handlers()
    _register_multiprocessing_finalizer()
    if _forked_before_import() and os._exit is not _exit_after_delivery:
        # This module was first imported after a fork (the parent never recorded), so
        # our at-fork hook did not run: wrap os._exit now, as that hook would have.
        os._exit = _exit_after_delivery


def _forked_before_import() -> bool:
    """True in a forked child whose parent had not imported this module (but had imported
    tasktrace, whose at-fork hook marks the child: :data:`tasktrace._fork.forked_child`)."""
    return _fork.forked_child


def _install_signal_handlers() -> None:
    """Deliver on SIGTERM and SIGHUP, if it can be done without changing what they do."""
    if threading.current_thread() is not threading.main_thread():
        return
    installed = [signum for signum in _EXIT_SIGNALS if _install_exit_handler(signum)]
    if installed:
        _install_signal_watch()  # (a forked child keeps the handlers, not the watch)


def _install_exit_handler(signum: int) -> bool:
    """Put ``_on_sigterm`` in place for ``signum``; True if it is (or already was)."""
    if signum in _handled_signals:
        return True
    try:
        current = signal.getsignal(signum)
    except (ValueError, AttributeError, OSError):
        return False
    if current is _on_sigterm:
        _handled_signals.add(signum)
        return True
    # SIG_IGN: the program wants to survive the signal; None: a handler installed from C
    # that we cannot call. Leave both alone. A Python handler is chained for SIGTERM
    # only: a SIGHUP handler usually means "reload", which must not come with a delivery
    # and an exit, so such a program keeps its SIGHUP to itself.
    chain = signum in _CHAINED_SIGNALS and callable(current)
    if current is not signal.SIG_DFL and not chain:
        return False
    try:
        signal.signal(signum, _on_sigterm)
    except (ValueError, OSError):
        return False
    _previous_handlers[signum] = current if chain else None
    _handled_signals.add(signum)
    return True


def _install_signal_watch() -> None:
    """Make sure our SIGTERM handler runs even if the signal lands just before the main
    thread blocks in a C call.

    CPython's C-level handler only notes the signal; the Python handler runs when the main
    thread next executes bytecode. A signal that arrives after the main thread's last
    check and before it blocks (in ``sem_wait`` under a ``multiprocessing`` lock, say)
    interrupts nothing, so the handler waits for the call to return -- for a pool worker
    that ``Pool.terminate()`` stops while the pool holds its queue's lock, forever, and
    the parent hangs joining it. SIGTERM with its default action cannot be missed; a
    handler can, so the handler brings this guard with it: a wake-up fd
    (``signal.set_wakeup_fd``), to which the C handler writes each signal's number, and
    a thread that reads it. When SIGTERM comes through and our handler has not started
    within :data:`SIGTERM_NUDGE_AFTER` seconds, the thread sends SIGTERM to the main
    thread itself (``pthread_kill``), which interrupts the blocking call, and the handler
    runs.

    The wake-up fd is a Unix datagram socket whose reader asks the kernel for each
    sender's pid (``SO_PASSCRED``): a forked child inherits the fd until its at-fork hook
    drops it, and a signal it takes meanwhile must not make this process terminate
    itself. Linux only (elsewhere there is no way to tell, and no guard); only when no
    other wake-up fd is set (asyncio sets its own, and its loop is woken by it anyway);
    main thread only, like ``signal.signal``.
    """
    global _wakeup_read, _wakeup_write
    if _wakeup_read >= 0 or not hasattr(signal, "pthread_kill"):
        return
    # The C module, not `socket` (which costs a few milliseconds more to import): this
    # runs on the program's thread, at its first task.
    import _socket

    if not hasattr(_socket, "SO_PASSCRED") or not hasattr(_socket, "SCM_CREDENTIALS"):
        return
    try:
        reader, writer = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    except OSError:
        return
    try:
        reader.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
        writer.setblocking(False)
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):
        reader.close()
        writer.close()
        return
    if previous != -1:  # someone else's: leave it in place, and go without the guard
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return
    _wakeup_read, _wakeup_write = reader.detach(), writer.detach()
    watcher = threading.Thread(
        target=_watch_signals, args=(_wakeup_read,), name="tasktrace-signals", daemon=True
    )
    try:
        _start_without_signals(watcher)
    except RuntimeError:  # interpreter shutdown
        _close_signal_watch()


def _watch_signals(read_fd: int) -> None:
    """The watcher thread: read signal numbers, each with its sender's pid, from the
    wake-up socket; nudge on a SIGTERM taken by this process."""
    import _socket
    import struct

    pid = os.getpid()
    credentials = struct.Struct("=iII")  # struct ucred: pid, uid, gid
    reader = _socket.socket(fileno=read_fd)
    try:
        while True:
            try:
                data, ancillary, _flags, _address = reader.recvmsg(
                    64, _socket.CMSG_SPACE(credentials.size)
                )
            except OSError:  # closed (after fork, or by tests)
                return
            if not data:
                return
            sender = -1
            for level, kind, payload in ancillary:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_CREDENTIALS:
                    sender = credentials.unpack_from(payload)[0]
            if sender == pid:
                for signum in _EXIT_SIGNALS:
                    if signum in data:
                        _nudge_if_unhandled(signum)
    finally:
        reader.detach()  # the fd is closed by _close_signal_watch, not here


def _nudge_if_unhandled(signum: int) -> None:
    """SIGTERM (or SIGHUP) arrived: if our handler has never run in this process within
    the grace period (and is still the one installed), send the signal to the main thread
    to wake it.

    Only a process whose handler never ran is nudged. The handler usually runs before
    this thread even reads the signal's number, so "not since the signal" cannot be told
    apart from "not at all" -- and a second SIGTERM must never reach a program's own
    handler that we chain to (many take it as "stop now, don't finish"). The first
    SIGTERM is the one that ends a process under the default action, the case the guard
    is for.
    """
    deadline = time.monotonic() + SIGTERM_NUDGE_AFTER
    while time.monotonic() < deadline:
        if _sigterm_calls:
            return
        time.sleep(0.01)
    if _sigterm_calls or signal.getsignal(signum) is not _on_sigterm:
        return
    try:
        signal.pthread_kill(threading.main_thread().ident or 0, signum)
    except (OSError, ValueError):
        pass


def _restore_signal_dispositions() -> None:
    """In a forked child: give the signals our handler took back to what they were.

    Python-level handlers survive fork, the watcher thread that guards ours does not
    (see :func:`_install_signal_watch`). A child with our handler and no watcher can miss
    a SIGTERM for good (a pool worker blocked on its queue's lock when Pool.terminate()
    comes: the worker hangs, and the parent joining it). A child has recorded nothing
    yet, so it has nothing to deliver: it gets the program's own disposition back, and
    the handler returns, with its watcher, when the child records
    (:func:`_install_process_hooks`).
    """
    for signum in list(_handled_signals):
        previous = _previous_handlers.get(signum)
        try:
            if signal.getsignal(signum) is _on_sigterm:
                signal.signal(signum, previous if callable(previous) else signal.SIG_DFL)
        except (ValueError, OSError):  # not the main thread: leave it as it is
            continue
        _previous_handlers.pop(signum, None)
        _handled_signals.discard(signum)


def _close_signal_watch() -> None:
    """Forget this process's wake-up pipe (after fork: the parent's; it is the parent's
    watcher that reads it)."""
    global _wakeup_read, _wakeup_write
    read_fd, write_fd = _wakeup_read, _wakeup_write
    _wakeup_read = _wakeup_write = -1
    if read_fd < 0:
        return
    try:
        current = signal.set_wakeup_fd(-1)
        if current != write_fd:  # not ours any more (asyncio's, say): put it back
            signal.set_wakeup_fd(current)
    except (ValueError, OSError):  # not the main thread
        pass
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    """SIGTERM or SIGHUP: deliver, then behave exactly as the previous disposition would.

    A Python signal handler runs on the main thread between two bytecodes of whatever it
    was doing -- possibly inside our own code, holding one of our locks (the record slow
    path, ``flush()``, an exit delivery already under way). So the handler never takes
    those locks itself: if an exit delivery is running, it only notes the signal, which
    that delivery acts on when it ends; otherwise the delivery runs in a helper thread
    that the handler joins for at most the exit budget.
    """
    global _sigterm_pending, _sigterm_calls
    _sigterm_calls += 1
    if _exiting_pid == os.getpid():
        _sigterm_pending = (signum, frame)
        return
    previous = _previous_handlers.get(signum)
    timeout = _max_shutdown_timeout()
    deliver: Callable[[], object] = (
        (lambda: _flush_all(timeout)) if callable(previous) else _exit_flush_all
    )

    def target() -> None:
        suppress_instrumentation()
        deliver()

    helper = threading.Thread(target=target, name="tasktrace-sigterm", daemon=True)
    try:
        _start_without_signals(helper)
        helper.join(_wait_seconds(timeout + 0.5))
    except Exception:  # no thread could start (interpreter shutdown): deliver nothing  # noqa: BLE001
        pass
    _after_sigterm_delivery(signum, frame)


def _after_sigterm_delivery(signum: int, frame: Optional[FrameType]) -> None:
    """Do what the signal would have done without tasktrace."""
    previous = _previous_handlers.get(signum)
    if callable(previous):
        # The program has its own graceful shutdown: let it run; atexit delivers the
        # rest if it exits normally.
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _register_multiprocessing_finalizer() -> None:
    """In a multiprocessing child, deliver from ``util._exit_function`` (before os._exit)."""
    mp_process = sys.modules.get("multiprocessing.process")
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_process is None or mp_util is None:
        return  # never import multiprocessing ourselves: it costs startup time
    try:
        if mp_process.parent_process() is None:
            return  # the main process: atexit covers it
        # Finalize(None, ..., exitpriority=0) runs in _exit_function's first pass, which
        # Process._bootstrap calls in every child (fork, forkserver, spawn) before the
        # child ends with os._exit. Registered in the child itself: the registry is
        # cleared when a child starts, and a Finalize is ignored in another pid.
        mp_util.Finalize(None, _exit_flush_all, exitpriority=0)
    except Exception:  # atexit or the os._exit wrapper still delivers  # noqa: BLE001
        _log.debug("tasktrace: cannot register the multiprocessing finalizer", exc_info=True)


def _max_shutdown_timeout() -> float:
    pid = os.getpid()
    timeouts = [r._settings.shutdown_timeout for r in list(_LIVE) if r._pid == pid]
    return max(timeouts, default=0.0)


def _flush_all(timeout: float) -> None:
    """Flush every recorder of this process, together, within ``timeout``."""
    pid = os.getpid()
    recorders = [r for r in list(_LIVE) if r._pid == pid and r._thread is not None]
    deadline = time.monotonic() + timeout
    work_deadline = deadline - _settling_margin(timeout)
    tickets = [(r, r._post(work_deadline, stop=False)) for r in recorders]
    for recorder, ticket in tickets:
        try:
            recorder._wait(ticket, deadline)
        except Exception:  # the others are still waited for; the ledger says what is left  # noqa: BLE001
            _log.debug("tasktrace: waiting for a flush failed", exc_info=True)


def _at_exit() -> None:
    """The ``atexit`` hook: the final delivery, leaving the exit status as it was.

    A program ended by an unhandled ``KeyboardInterrupt`` (Ctrl-C, SIGINT) exits by
    SIGINT -- status 130 in a shell -- because ``Py_RunMain`` reads a flag after the
    interpreter is finalized. Every piece of code compiled from a string on the way
    (``exec``/``eval``; ``dataclasses`` builds its methods so, and the first harvest may
    import modules that use it) resets that flag, and the status would become 1. So when
    the program is ending on a ``KeyboardInterrupt``, the flag is set again once the
    delivery is done.
    """
    interrupted = _ending_on_keyboard_interrupt()
    try:
        _exit_flush_all()
    finally:
        if interrupted:
            _mark_keyboard_interrupt_unhandled()


def _ending_on_keyboard_interrupt() -> bool:
    """True if the main program ended with an unhandled ``KeyboardInterrupt``.

    ``PyErr_Print`` stores the exception that ended the main program in ``sys.last_exc``
    (3.12+) and ``sys.last_value`` before ``atexit`` runs; nothing else sets them in a
    program that is not interactive (an interactive session sets them for every error it
    shows, so it is left alone).
    """
    if sys.flags.interactive or hasattr(sys, "ps1"):
        return False
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


def _mark_keyboard_interrupt_unhandled() -> None:
    """Set CPython's "unhandled KeyboardInterrupt" flag again.

    The flag is set when code compiled from a string ends with a ``KeyboardInterrupt``
    (``run_eval_code_obj``), so that is what this does; the exception is caught here.
    """
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass


def _exit_flush_all() -> None:
    """The final delivery of this process, shared by every exit path, within one budget.

    Safe to call several times (atexit, multiprocessing's exit function, the ``os._exit``
    wrapper, SIGTERM): later calls only use what is left of the first call's budget.
    """
    global _exiting_pid, _sigterm_pending
    pid = os.getpid()
    if _exiting_pid == pid:
        return  # re-entered (from another exit path while this one runs)
    _exiting_pid = pid
    try:
        _exit_flush_recorders(pid)
    finally:
        _exiting_pid = 0
        pending, _sigterm_pending = _sigterm_pending, None
        if pending is not None:
            # SIGTERM (SIGHUP) arrived while we delivered: now act on it as it would have.
            _after_sigterm_delivery(*pending)


def _exit_flush_recorders(pid: int) -> None:
    global _exit_deadline
    try:
        recorders = [r for r in list(_LIVE) if r._pid == pid]
        if not recorders:
            return
        if _exit_deadline is None or _exit_deadline[0] != pid:
            _exit_deadline = (pid, time.monotonic() + _max_shutdown_timeout())
        deadline = _exit_deadline[1]
        work_deadline = deadline - _settling_margin(_max_shutdown_timeout())
        tickets = []
        for recorder in recorders:
            if recorder._stopped or (recorder._thread is None and not recorder._buffer):
                continue
            tickets.append((recorder, recorder._post(work_deadline, stop=True)))
        for recorder, ticket in tickets:
            recorder._wait(ticket, deadline)  # (what did not finish is pending in the ledger)
            recorder._warn_at_exit()
        for recorder in recorders:
            recorder._warn_at_exit()  # (says nothing if everything was delivered)
    except Exception as exc:  # exit must go on whatever happens here; say it once  # noqa: BLE001
        for recorder in [r for r in list(_LIVE) if r._pid == pid][:1]:
            recorder._log_once(
                "recorder", f"exit delivery failed: {type(exc).__name__}: {exc}", exc_info=True
            )


def _exit_after_delivery(status: int) -> Any:
    """``os._exit`` in forked children: deliver this process's records, then exit."""
    _exit_flush_all()
    return _real_os_exit(status)


def _before_fork() -> None:
    # Hold every recorder's lock across fork() so the child never copies a half-done
    # eviction; the harvest thread holds it only for short, I/O-free sections.
    for recorder in list(_LIVE):
        recorder._lock.acquire()


def _after_fork_in_parent() -> None:
    for recorder in list(_LIVE):
        try:
            recorder._lock.release()
        except RuntimeError:
            pass


def _after_fork_in_child() -> None:
    global _hooks_pid, _exit_deadline, _exiting_pid, _sigterm_pending, _sigterm_calls
    _exiting_pid = 0
    _sigterm_pending = None
    _sigterm_calls = 0
    # The wake-up pipe is the parent's: a signal here must not reach its watcher. A new
    # one comes with the hooks, when this process records.
    _close_signal_watch()
    for recorder in list(_LIVE):
        # Fresh state: the parent's pending records are the parent's to deliver. The old
        # lock is abandoned (never released): new objects replace everything.
        recorder._reset_process_state()
    _hooks_pid = 0
    _exit_deadline = None
    _restore_signal_dispositions()
    if os._exit is not _exit_after_delivery:
        os._exit = _exit_after_delivery


_fork.register(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _reset_for_tests() -> None:
    """Forget the exit deadline (tests simulate several exits in one process)."""
    global _exit_deadline
    _exit_deadline = None
