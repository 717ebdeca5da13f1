"""W3C trace context for job messages: ``traceparent``/``tracestate`` written by the
producer and read, defensively, by the worker.

What a message carries is data from outside the process: anything that is not exactly a
valid header (wrong type, wrong length, upper-case hex, all-zero ids, control characters)
counts as no context at all, never as an error.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

#: The message keys (Celery headers, RQ job meta, ...) tasktrace writes and reads.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Epoch seconds at which the producer enqueued the job, for ``job.queue_wait_ms``.
ENQUEUED_AT = "tasktrace_enqueued_at"

#: The longest ``tracestate`` kept (the W3C limit is 32 members of at most 256 characters;
#: 512 is what the specification says a vendor must at least propagate).
MAX_TRACESTATE = 512
_HEX = frozenset("0123456789abcdef")


class TraceContext(NamedTuple):
    """The producer's trace, as a job message carried it."""

    trace_id: int
    span_id: int
    tracestate: Optional[str] = None


def format_traceparent(trace_id: int, span_id: int) -> str:
    """The ``traceparent`` header of span ``span_id`` in trace ``trace_id`` (sampled)."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def _hex(text: str, length: int) -> Optional[int]:
    if len(text) != length or not _HEX.issuperset(text):
        return None
    value = int(text, 16)
    return value or None  # an all-zero id is invalid


def parse_traceparent(value: Any) -> Optional[TraceContext]:
    """``(trace id, span id)`` of a ``traceparent`` header, or None if it is not a valid one.

    Version ``00`` must be exactly four fields; a later version may append fields (W3C
    forward compatibility); version ``ff`` is invalid.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if type(value) is not str or len(value) > 512:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or not _HEX.issuperset(parts[0]):
        return None
    if parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
        return None
    trace_id = _hex(parts[1], 32)
    span_id = _hex(parts[2], 16)
    if trace_id is None or span_id is None or len(parts[3]) != 2 or not _HEX.issuperset(parts[3]):
        return None
    return TraceContext(trace_id, span_id)


def parse_tracestate(value: Any) -> Optional[str]:
    """A ``tracestate`` header worth passing on (printable ASCII, bounded), else None."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if type(value) is not str or not value or len(value) > MAX_TRACESTATE:
        return None
    if not all(" " <= ch <= "~" for ch in value):
        return None
    return value


def read_context(traceparent: Any, tracestate: Any) -> Optional[TraceContext]:
    """The context two header values carry, or None (never raises)."""
    try:
        parent = parse_traceparent(traceparent)
        if parent is None:
            return None
        return parent._replace(tracestate=parse_tracestate(tracestate))
    except Exception:  # noqa: BLE001 - hostile header objects count as no context
        return None


def parse_timestamp(value: Any) -> Optional[float]:
    """Epoch seconds from a message field (a number or its text), or None."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)) or (isinstance(value, (str, bytes)) and len(value) < 64):
            seconds = float(value)
        else:
            return None
    except (TypeError, ValueError):
        return None
    return seconds if 0.0 < seconds < 1e11 else None
