"""W3C trace context for job messages: ``traceparent``/``tracestate`` written by the
producer and read, defensively, by the worker.

What a message carries is data from outside the process: anything that is not exactly a
valid header (wrong type, wrong length, upper-case hex, all-zero ids, control characters)
counts as no context at all, never as an error.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional

#: The message keys (Celery headers, RQ job meta, ...) tasktrace writes and reads.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Epoch seconds at which the producer enqueued the job, for ``job.queue_wait_ms``.
ENQUEUED_AT = "tasktrace_enqueued_at"

#: The longest ``tracestate`` kept (the W3C limit is 32 members of at most 256 characters;
#: 512 is what the specification says a vendor must at least propagate).
MAX_TRACESTATE = 512


class TraceContext(NamedTuple):
    """The producer's trace, as a job message carried it."""

    trace_id: int
    span_id: int
    tracestate: Optional[str] = None


def format_traceparent(trace_id: int, span_id: int) -> str:
    """The ``traceparent`` header of span ``span_id`` in trace ``trace_id`` (sampled)."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


#: version-traceid-parentid-flags, lower-case hex, then (for a version after 00) more
#: fields, each after a dash. One C-level match per message.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?", re.S)


def parse_traceparent(value: Any) -> Optional[TraceContext]:
    """``(trace id, span id)`` of a ``traceparent`` header, or None if it is not a valid one.

    Version ``00`` must be exactly four fields; a later version may append fields (W3C
    forward compatibility); version ``ff`` is invalid; an all-zero id is invalid.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if type(value) is not str or len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id = int(trace_hex, 16)
    span_id = int(span_hex, 16)
    if not trace_id or not span_id:
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
        if tracestate is None:
            return parent
        return TraceContext(parent.trace_id, parent.span_id, parse_tracestate(tracestate))
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
