"""OTLP/HTTP JSON encoding of transactions: each one a root span (kind INTERNAL), each of
its function traces a child span, one ``resourceSpans`` entry per application.

Pure functions of the records (and an id source): :func:`build_request` builds the
``ExportTraceServiceRequest`` as a dict, :func:`_encode` turns it into the UTF-8 body. The
transport (HTTP, retries, TLS) is :mod:`tasktrace.reporters.otlp`'s.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Sequence
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from tasktrace import _rng
from tasktrace._version import __version__
from tasktrace.records import AttributeValue, TransactionRecord

_SPAN_KIND_INTERNAL = 1
_SPAN_KIND_PRODUCER = 4
_SPAN_KIND_CONSUMER = 5
#: The ``job.*`` attributes of a job's transaction (tasktrace.integrations) that the
#: OpenTelemetry messaging conventions name otherwise, and the link it may carry.
_MESSAGING = (("job.id", "messaging.message.id"), ("job.queue", "messaging.destination.name"))
_LINK_TRACE_ID = "tasktrace.link.trace_id"
_LINK_SPAN_ID = "tasktrace.link.span_id"
#: Groups of the job systems' ``enqueue <task>`` traces (PRODUCER spans).
_JOB_GROUPS = frozenset({"Celery", "RQ", "Dramatiq", "Huey", "arq"})
_STATUS_CODE_ERROR = 2
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_RESERVED_ATTRIBUTES = frozenset(
    {
        "tasktrace.group",
        "tasktrace.background",
        "tasktrace.cpu_time",
        "tasktrace.exclusive_time",
        "tasktrace.dropped_segments",
        "code.function",
        "code.namespace",
        "thread.id",
        _LINK_TRACE_ID,
        _LINK_SPAN_ID,
    }
)


def _value(value: AttributeValue) -> Dict[str, Any]:
    """An OTLP ``AnyValue`` (bool before int: bool is an int in Python)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(value)}  # int64 is a string in OTLP JSON
        return {"stringValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        # JSON has no NaN/Infinity literals; protobuf JSON spells them as strings.
        return {
            "doubleValue": "NaN"
            if math.isnan(value)
            else ("Infinity" if value > 0 else "-Infinity")
        }
    return {"stringValue": str(value)}


def _kv(key: str, value: AttributeValue) -> Dict[str, Any]:
    return {"key": key, "value": _value(value)}


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


def _span_id(getrandbits: Callable[[int], int]) -> str:
    span_id = 0
    while span_id == 0:  # an all-zero id is invalid
        span_id = getrandbits(64)
    return f"{span_id:016x}"


def _spans(record: TransactionRecord, getrandbits: Callable[[int], int]) -> List[Dict[str, Any]]:
    """The root span of ``record`` followed by one child span per segment."""
    trace_id = f"{record.trace_id:032x}"
    root_id = f"{record.span_id:016x}"
    start_ns = _nanos(record.start)
    attributes = [
        _kv("tasktrace.group", record.group),
        _kv("tasktrace.background", record.background),
        _kv("thread.id", record.thread_id),
        _kv("tasktrace.exclusive_time", float(record.exclusive)),
    ]
    if record.cpu_time is not None:
        attributes.append(_kv("tasktrace.cpu_time", float(record.cpu_time)))
    namespace, sep, function = record.name.partition(":")
    if sep and namespace and function:
        attributes.append(_kv("code.namespace", namespace))
        attributes.append(_kv("code.function", function))
    if record.dropped_segments:
        attributes.append(_kv("tasktrace.dropped_segments", record.dropped_segments))
    for key, value in record.attributes.items():
        if key not in _RESERVED_ATTRIBUTES:
            attributes.append(_kv(str(key), value))
    root: Dict[str, Any] = {
        "traceId": trace_id,
        "spanId": root_id,
        "name": record.name,
        "kind": _SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + _nanos(record.duration)),
        "attributes": attributes,
    }
    if record.parent_span_id is not None:
        root["parentSpanId"] = f"{record.parent_span_id:016x}"
    system = record.attributes.get("job.system")
    if isinstance(system, str):
        _as_job(root, record, system)
    if record.errors:
        last = record.errors[-1]
        root["status"] = {"code": _STATUS_CODE_ERROR, "message": f"{last.type}: {last.message}"}
        root["events"] = [
            {
                "name": "exception",
                "timeUnixNano": str(_nanos(error.timestamp)),
                "attributes": [
                    _kv("exception.type", error.type),
                    _kv("exception.message", error.message),
                    _kv("exception.stacktrace", error.traceback),
                ],
            }
            for error in record.errors
        ]
    spans = [root]
    # Ids first: a parent may come after its children (segments are kept as they end).
    ids = [_span_id(getrandbits) for _ in record.segments]
    for span_id, segment in zip(ids, record.segments):
        parent_index = segment.parent
        parent = ids[parent_index] if 0 <= parent_index < len(ids) else root_id
        seg_start = start_ns + _nanos(segment.start)
        seg_attributes = [_kv("tasktrace.group", segment.group)]
        kind = _SPAN_KIND_INTERNAL
        if segment.group in _JOB_GROUPS and segment.name.startswith("enqueue "):
            kind = _SPAN_KIND_PRODUCER
            seg_attributes.append(_kv("messaging.system", segment.group.lower()))
            seg_attributes.append(_kv("messaging.operation.name", "send"))
        spans.append(
            {
                "traceId": trace_id,
                "spanId": span_id,
                "parentSpanId": parent,
                "name": segment.name,
                "kind": kind,
                "startTimeUnixNano": str(seg_start),
                "endTimeUnixNano": str(seg_start + _nanos(segment.duration)),
                "attributes": seg_attributes,
            }
        )
    return spans


def _as_job(root: Dict[str, Any], record: TransactionRecord, system: str) -> None:
    """Make ``root`` a job's span: kind CONSUMER, messaging attributes, the span link."""
    root["kind"] = _SPAN_KIND_CONSUMER
    attributes: List[Dict[str, Any]] = root["attributes"]
    attributes.append(_kv("messaging.system", system.lower()))
    attributes.append(_kv("messaging.operation.name", "process"))
    for ours, theirs in _MESSAGING:
        value = record.attributes.get(ours)
        if value is not None:
            attributes.append(_kv(theirs, value))
    link_trace = record.attributes.get(_LINK_TRACE_ID)
    link_span = record.attributes.get(_LINK_SPAN_ID)
    if isinstance(link_trace, str) and isinstance(link_span, str):
        root["links"] = [{"traceId": link_trace, "spanId": link_span}]


def build_request(
    records: Sequence[TransactionRecord],
    *,
    pid: Optional[int] = None,
    host: Optional[str] = None,
    getrandbits: Callable[[int], int] = _rng.getrandbits,
    resource: Optional[Sequence[Tuple[str, Union[str, int]]]] = None,
) -> Dict[str, Any]:
    """The ``ExportTraceServiceRequest`` for ``records``, as OTLP JSON (a dict).

    Args:
        records: The transactions; one ``resourceSpans`` entry is made per app.
        pid: ``process.pid`` (default: the records' pid, else this process).
        host: ``host.name`` (default: ``socket.gethostname()``).
        getrandbits: Source of the segments' span ids (tasktrace's own random source,
            reseeded in forked children; never the program's global ``random``).
        resource: The process's resource attributes after ``service.name``
            (:func:`tasktrace.resource.process_resource`); when given, ``pid`` and
            ``host`` are not used.
    """
    host = socket.gethostname() if host is None else host
    by_app: Dict[str, List[Dict[str, Any]]] = {}
    pids: Dict[str, int] = {}
    for record in records:
        by_app.setdefault(record.app, []).extend(_spans(record, getrandbits))
        pids.setdefault(record.app, record.pid)
    resource_spans = []
    shared = None if resource is None else [_kv(name, value) for name, value in resource]
    for app, spans in by_app.items():
        if shared is not None:
            attributes = [_kv("service.name", app), *shared]
        else:
            attributes = [
                _kv("service.name", app),
                _kv("process.pid", pids[app] if pid is None else pid),
                _kv("host.name", host),
                _kv("telemetry.sdk.name", "tasktrace"),
                _kv("telemetry.sdk.language", "python"),
                _kv("telemetry.sdk.version", __version__),
            ]
        resource_spans.append(
            {
                "resource": {"attributes": attributes},
                "scopeSpans": [
                    {"scope": {"name": "tasktrace", "version": __version__}, "spans": spans}
                ],
            }
        )
    return {"resourceSpans": resource_spans}


def _encode(request: Dict[str, Any]) -> bytes:
    r"""``request`` as UTF-8 JSON; lone surrogates become U+FFFD.

    Python strings may hold lone surrogates (``surrogateescape`` text from file names,
    ``sys.argv`` or the environment, often inside an exception message). They are not
    valid UTF-8, nor valid as ``\\u`` escapes in JSON, and a strict collector rejects the
    whole request for one of them; so they are replaced (OTLP strings must be UTF-8).
    """
    text = json.dumps(request, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a surrogate pair becomes its character, a lone one one U+FFFD.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return text.encode("utf-8")
