"""Live transactions and segments, and the context variable that says which is current.

A :class:`Transaction` is one unit of work being timed. Which one is *current* is kept in a
:class:`contextvars.ContextVar`, so every thread and every asyncio task has its own. The
variable holds a *node*: either the transaction itself or the innermost active
:class:`Segment` (function trace) inside it; both expose ``txn`` and ``index`` so a new
segment knows its transaction and its parent in one read.

How a task or trace is opened and closed around a call is in :mod:`tasktrace._scopes`; the
``with``-block forms are in :mod:`tasktrace.blocks` and :mod:`tasktrace.segments`; the
functions acting on the current transaction in :mod:`tasktrace.current`; the decorators and
wrappers in :mod:`tasktrace.api` and :mod:`tasktrace.wrappers`. Nothing here imports wrapt.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from types import FrameType, MappingProxyType, TracebackType
from typing import Any, Dict, List, Optional, Set, Tuple, Type, Union

from tasktrace import _clock, _fork, _running
from tasktrace._logging import get_logger
from tasktrace._rng import getrandbits
from tasktrace._state import STATE
from tasktrace._suppress import SUPPRESSED as _SUPPRESSED
from tasktrace._suppress import suppress_instrumentation as suppress_instrumentation
from tasktrace.records import (
    EMPTY_ATTRIBUTES,
    AttributeValue,
    ErrorRecord,
    SegmentRecord,
    TransactionRecord,
)

_log = get_logger()

#: Limits on custom attributes (the same as the common APM agents use).
MAX_ATTRIBUTES = 128
MAX_ATTRIBUTE_KEY_LENGTH = 255
MAX_ATTRIBUTE_VALUE_LENGTH = 255
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Integers up to this many bits have at most 254 decimal characters (sign included).
_MAX_TEXT_INT_BITS = 840
#: Most characters of a formatted traceback kept per error.
MAX_TRACEBACK_LENGTH = 32_768

_perf_counter = time.perf_counter
_thread_time = time.thread_time
_time = time.time
_get_ident = threading.get_ident
#: Builds a named tuple from a plain tuple in C, skipping the generated Python __new__.
_new_tuple = tuple.__new__

#: The process id, refreshed in forked children, so the hot path need not call getpid().
_PID = _fork.pid


#: Transactions opened through a scope (every form but the inlined sync wrapper of
#: :func:`tasktrace._calls_importlib_bootstrap.fast_task`, whose open transactions the
#: harvest thread finds on the threads' stacks instead), until their scope closes: the
#: harvest thread reads it to say which tasks are running (SPEC section 7).
OPEN: Set[Transaction] = set()


#: ``perf_counter`` at the last fork (in a child): transactions that began before it are
#: the parent's, open on the copy of the forking thread's stack.
_forked_at = float("-inf")


def _after_fork_in_child() -> None:
    global _PID, _forked_at
    _PID = _fork.pid
    # The parent's open transactions are the parent's to report.
    OPEN.clear()
    _forked_at = _perf_counter()


_fork.register(after_in_child=_after_fork_in_child)

ExcInfo = Tuple[Type[BaseException], BaseException, Optional[TracebackType]]


class Segment:
    """A function trace in progress inside a transaction."""

    __slots__ = ("duration", "group", "index", "name", "parent", "start", "txn")

    def __init__(
        self, txn: Transaction, index: int, name: str, group: str, parent: int, start: float
    ) -> None:
        self.txn = txn
        self.index = index
        self.name = name
        self.group = group
        self.parent = parent
        self.start = start
        #: Seconds, set when the segment ends; -1.0 while it runs.
        self.duration = -1.0


Node = Union["Transaction", Segment]

#: The innermost active transaction or segment of this thread / asyncio task.
_CURRENT: ContextVar[Optional[Node]] = ContextVar("tasktrace_current", default=None)


class _Rare:
    """The state few transactions need (errors, attributes, ignore, limits hit, CPU clock),
    allocated on first use so that starting a transaction stays a handful of stores."""

    __slots__ = (
        "attributes",
        "cpu0",
        "dropped_attributes",
        "dropped_segments",
        "errors",
        "ignored",
        "named_by_job",
        "noticed",
        "parent_span_id",
        "tracestate",
    )

    def __init__(self) -> None:
        self.attributes: Optional[Dict[str, AttributeValue]] = None
        self.cpu0 = -1.0  # thread CPU clock at the start; negative: not measured
        self.dropped_attributes = 0
        self.dropped_segments = 0
        self.errors: Optional[List[ErrorRecord]] = None
        self.ignored = False
        #: Named by a job system's integration by default: the first task target run
        #: directly inside it names it instead (see ``tasktrace._scopes``).
        self.named_by_job = False
        #: The exceptions recorded so far, kept (not their ids, which the interpreter
        #: reuses once an exception is freed) until the transaction finishes.
        self.noticed: Optional[List[BaseException]] = None
        #: The span this transaction continues (trace context carried in by a job system).
        self.parent_span_id: Optional[int] = None
        #: The W3C ``tracestate`` that came with that context, passed on to what it enqueues.
        self.tracestate: Optional[str] = None


class Transaction:
    """A transaction in progress: a background task or a web transaction.

    Created and finished by the wrappers and context managers; user code gets one from
    :func:`current_transaction` and may rename it, add attributes, record errors or ignore
    it. Every method is safe to call after the transaction finished (it does nothing).
    """

    __slots__ = (
        "_rare",
        "_t0",
        "app",
        "background",
        "finished",
        "group",
        "name",
        "segments",
        "span_id",
        "thread_id",
        "trace_id",
        "txn",
    )

    #: A transaction is the root node: segments directly under it have parent -1.
    index = -1

    def __init__(self, app: Optional[str], name: str, group: str, background: bool = True) -> None:
        # This runs once per task on the caller's thread: plain attribute stores only.
        # Segments stay None until the first one, and the rest (_Rare) until first use.
        self.txn = self
        self.app = app
        self.name = name
        self.group = group
        self.background = background
        self.finished = False
        self.segments: Optional[List[Segment]] = None
        self.trace_id = getrandbits(128) or 1
        self.span_id = getrandbits(64) or 1
        self.thread_id = _get_ident()
        self._rare: Optional[_Rare] = None
        if STATE.start_hook:  # CPU time on, or the first task since start or fork
            STATE.transaction_started(self)
        if _SUPPRESSED.get():  # one of tasktrace's own threads: time nothing, record nothing
            self._suppressed()
        self._t0 = _perf_counter()

    def _measure_cpu(self) -> None:
        """Start this transaction's thread CPU clock (``cpu_time = true``)."""
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        rare.cpu0 = _thread_time()

    def _suppressed(self) -> None:
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        rare.ignored = True

    def __repr__(self) -> str:
        kind = "background" if self.background else "web"
        return f"<Transaction {kind} {self.group}/{self.name} app={self.app_name!r}>"

    @property
    def start(self) -> float:
        """Epoch seconds at which the transaction began."""
        return _clock.epoch_offset + self._t0

    @property
    def app_name(self) -> str:
        """The application this transaction reports to."""
        return self.app or STATE.settings.app_name

    def _more(self) -> _Rare:
        """The rarely used state, created on first use."""
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        return rare

    @property
    def ignored(self) -> bool:
        """True if this transaction will not be reported (see :meth:`ignore`)."""
        return self._rare is not None and self._rare.ignored

    @property
    def errors(self) -> Tuple[ErrorRecord, ...]:
        """The errors recorded so far, in order."""
        rare = self._rare
        return tuple(rare.errors) if rare is not None and rare.errors else ()

    @property
    def attributes(self) -> Mapping[str, AttributeValue]:
        """The custom attributes added so far (a read-only view)."""
        rare = self._rare
        if rare is None or not rare.attributes:
            return EMPTY_ATTRIBUTES
        return MappingProxyType(rare.attributes)

    @property
    def dropped_attributes(self) -> int:
        """Custom attributes refused because the transaction reached its limit."""
        return 0 if self._rare is None else self._rare.dropped_attributes

    @property
    def dropped_segments(self) -> int:
        """Function traces not kept because the transaction reached ``max_segments``."""
        return 0 if self._rare is None else self._rare.dropped_segments

    def _continue_trace(
        self, trace_id: int, parent_span_id: int, tracestate: Optional[str] = None
    ) -> None:
        """Make this transaction a child of span ``parent_span_id`` in trace ``trace_id``
        (trace context a job system carried from the code that enqueued the job)."""
        if self.finished:
            return
        rare = self._more()
        self.trace_id = trace_id
        rare.parent_span_id = parent_span_id
        rare.tracestate = tracestate

    @property
    def tracestate(self) -> Optional[str]:
        """The W3C ``tracestate`` this transaction continued with, if any."""
        return None if self._rare is None else self._rare.tracestate

    def _drop_segment(self) -> None:
        """Count a function trace not kept because of ``max_segments``."""
        self._more().dropped_segments += 1

    # -- what user code may do with the current transaction ----------------------------

    def set_name(self, name: str, group: Optional[str] = None) -> None:
        """Rename the transaction (and optionally regroup it)."""
        if not self.finished:
            self.name = str(name)
            if group is not None:
                self.group = str(group)

    def ignore(self, flag: bool = True) -> None:
        """Do not report this transaction (``flag=False`` undoes it)."""
        self._more().ignored = bool(flag)

    def add_custom_attribute(self, key: str, value: Any) -> bool:
        """Attach ``key=value``; returns whether it was kept.

        Keys are strings of at most 255 characters; values are str, int, float or bool,
        strings cut to 255 characters; at most 128 attributes per transaction. Anything
        else is ignored with a debug log, never an exception.
        """
        if self.finished:
            return False
        if not isinstance(key, str) or not key or len(key) > MAX_ATTRIBUTE_KEY_LENGTH:
            _log.debug("custom attribute ignored: key must be a str of 1-255 characters")
            return False
        if type(key) is not str:
            # Subclasses of str, int and float are stored as the plain value: their own
            # __str__/__hash__ run later, in a reporter, and may raise or lie there.
            key = str.__str__(key)
        value_type = type(value)
        if isinstance(value, str):
            if value_type is not str:
                value = str.__str__(value)
            if len(value) > MAX_ATTRIBUTE_VALUE_LENGTH:
                value = value[:MAX_ATTRIBUTE_VALUE_LENGTH]
        elif value_type is bool:
            pass
        elif isinstance(value, int):
            value = int.__index__(value)
            if not _INT64_MIN <= value <= _INT64_MAX:
                # Beyond a 64-bit integer (what OTLP and SQLite hold): kept as its decimal
                # text when that fits the string limit; a longer one cannot even be
                # converted cheaply (and would fail every reporter's encoding), so it goes.
                if value.bit_length() > _MAX_TEXT_INT_BITS:
                    _log.debug("custom attribute %r ignored: integer too large", key[:64])
                    return False
                value = str(value)
        elif isinstance(value, float):
            if value_type is not float:
                value = float.__float__(value)
        else:
            _log.debug(
                "custom attribute %r ignored: value of type %s is not str, int, float or bool",
                key[:64],
                value_type.__name__,
            )
            return False
        rare = self._more()
        attrs = rare.attributes
        if attrs is None:
            attrs = rare.attributes = {}
        if key not in attrs and len(attrs) >= MAX_ATTRIBUTES:
            rare.dropped_attributes += 1
            _log.debug("custom attribute %r ignored: limit of %d reached", key[:64], MAX_ATTRIBUTES)
            return False
        attrs[key] = value
        return True

    def notice_error(self, error: Union[BaseException, ExcInfo, None] = None) -> None:
        """Record an exception (default: the one being handled) without raising it."""
        if self.finished:
            return
        exc: Optional[BaseException]
        if error is None:
            exc = sys.exc_info()[1]
        elif isinstance(error, tuple):
            exc = error[1] if len(error) > 1 else None
        else:
            exc = error
        if not isinstance(exc, BaseException):
            if exc is not None:
                _log.debug("notice_error ignored %s: not an exception", type(exc).__name__)
            return
        self._record_exception(exc)

    # -- used by the wrappers ----------------------------------------------------------

    def _record_exception(self, exc: BaseException) -> None:
        """Record ``exc`` once (the same object seen again by an outer scope is skipped)."""
        rare = self._more()
        noticed = rare.noticed
        if noticed is None:
            noticed = rare.noticed = []
        else:
            for seen in noticed:
                if seen is exc:
                    return
        noticed.append(exc)
        if rare.errors is None:
            rare.errors = []
        rare.errors.append(error_record(exc))

    def _finish(self) -> None:
        """Stop the clock, freeze the transaction into a record and hand it on.

        Never raises: a failure here is tasktrace's own and must not reach user code.
        """
        t1 = _perf_counter()
        rare = self._rare
        if rare is None:  # the common case: nothing but timing
            if self.finished:
                return
            self.finished = True
            cpu = None
            errors: Tuple[ErrorRecord, ...] = ()
            attributes = EMPTY_ATTRIBUTES
            dropped_segments = 0
            parent_span_id = None
        else:
            cpu0 = rare.cpu0
            # (Clamped at zero: a generator stepped from several threads reads the clock
            # of another thread at its end.)
            cpu = None if cpu0 < 0.0 else max(_thread_time() - cpu0, 0.0)
            if self.finished:
                return
            self.finished = True
            # Let go of the noticed exceptions: their tracebacks hold frames, which may in
            # turn hold this transaction.
            rare.noticed = None
            if rare.ignored:
                return
            errors = tuple(rare.errors) if rare.errors else ()
            attrs = rare.attributes
            attributes = MappingProxyType(dict(attrs)) if attrs else EMPTY_ATTRIBUTES
            dropped_segments = rare.dropped_segments
            parent_span_id = rare.parent_span_id
        try:
            duration = t1 - self._t0
            segments = self.segments
            if segments:
                seg_records, children = _freeze_segments(segments, self._t0, t1)
                exclusive = duration - children
                if exclusive < 0.0:  # overlapping async children can sum past the total
                    exclusive = 0.0
            else:
                seg_records = ()
                exclusive = duration
            STATE.record(
                _new_tuple(
                    TransactionRecord,
                    (
                        self.app or STATE.settings.app_name,
                        self.name,
                        self.group,
                        self.background,
                        _clock.epoch_offset + self._t0,
                        duration,
                        exclusive,
                        cpu,
                        _PID,
                        self.thread_id,
                        errors,
                        attributes,
                        seg_records,
                        self.trace_id,
                        self.span_id,
                        dropped_segments,
                        parent_span_id,
                    ),
                )
            )
        except Exception:  # pragma: no cover - defensive: never raise into user code  # noqa: BLE001
            _log.debug("tasktrace failed to record a transaction", exc_info=True)


def _freeze_segments(
    segments: List[Segment], t0: float, t1: float
) -> Tuple[Tuple[SegmentRecord, ...], float]:
    """The segments as records (start relative to ``t0``) and their direct children's total."""
    children = 0.0
    frozen = []
    for seg in segments:
        duration = seg.duration
        if duration < 0.0:  # still open (e.g. an abandoned generator): ends with the txn
            duration = t1 - seg.start
        if seg.parent == -1:
            children += duration
        frozen.append(
            _new_tuple(SegmentRecord, (seg.name, seg.group, seg.start - t0, duration, seg.parent))
        )
    return tuple(frozen), children


def is_error(exc: BaseException) -> bool:
    """Whether ``exc`` ending a task counts as an error (SPEC 2, rule 3)."""
    if isinstance(exc, GeneratorExit):
        return False
    if isinstance(exc, SystemExit):
        return exc.code not in (0, None)
    cls = type(exc)
    # Checked by name so that asyncio need not be imported; concurrent.futures has its own.
    return not (
        cls.__name__ == "CancelledError"
        and cls.__module__ in ("asyncio.exceptions", "concurrent.futures._base", "asyncio")
    )


def error_record(exc: BaseException) -> ErrorRecord:
    """Describe ``exc`` as an :class:`ErrorRecord`; never raises."""
    cls = type(exc)
    type_name = f"{cls.__module__}:{cls.__qualname__}"
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception's __str__ may raise anything
        message = f"<unprintable {cls.__qualname__} object>"
    try:
        text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 - formatting a traceback may raise anything (a hostile __str__ in the chain)
        text = ""
    if len(text) > MAX_TRACEBACK_LENGTH:
        text = text[-MAX_TRACEBACK_LENGTH:]
    return ErrorRecord(type_name, message, text, _time())


def open_background_tasks() -> List[_running.OpenTask]:
    """This process's open, reported background transactions, on any thread or task.

    Runs on the harvest thread. Two sources: :data:`OPEN` (every scope-made transaction)
    and the threads' stacks (``sys._current_frames()``), where a frame running the inlined
    sync wrapper (:data:`tasktrace._calls_importlib_bootstrap.FAST_TASK_CODE`) holds its
    transaction in the local ``txn``, so that the hot path pays nothing for being found.
    """
    found: Dict[int, Transaction] = {}
    for txn in list(OPEN):  # (one C-level copy: no Python code runs while it is made)
        found[id(txn)] = txn
    module = sys.modules.get("tasktrace._calls_importlib_bootstrap")
    code = getattr(module, "FAST_TASK_CODE", None)
    if code is not None:
        for top in sys._current_frames().values():
            frame: Optional[FrameType] = top
            while frame is not None:
                if frame.f_code is code:
                    local = frame.f_locals.get("txn")
                    if type(local) is Transaction:
                        found[id(local)] = local
                frame = frame.f_back
            del top, frame
    now = _perf_counter()
    offset = _clock.epoch_offset
    return [
        _running.OpenTask(
            txn.app_name,
            txn.name,
            txn.group,
            txn.thread_id,
            txn.trace_id,
            txn.span_id,
            offset + txn._t0,
            now - txn._t0,
        )
        for txn in found.values()
        if txn.background and not txn.finished and not txn.ignored and txn._t0 > _forked_at
    ]


_running.scanner = open_background_tasks
