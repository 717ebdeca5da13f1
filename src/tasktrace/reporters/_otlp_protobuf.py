"""OTLP/HTTP protobuf encoding of the metrics request, for ``http/protobuf``
(``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``), without a protobuf library.

The request is built once, as the OTLP JSON dict of
:func:`tasktrace.reporters._otlp_metrics.build_metrics_request`; this module writes the same
message in the protobuf wire format, walking the dict with a table of the fields the
metrics use (field number and wire type from ``opentelemetry-proto``'s ``.proto`` files).
Some collectors need it: rotel (0.0.1-alpha10 and alpha15) mangles every histogram it receives as JSON.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Mapping, Tuple

# Kinds: "msg" (a nested message, its schema named), "str", "u64" (varint), "i64" (int64
# varint), "s32" (zigzag varint), "f64" (fixed64), "sf64" (sfixed64), "dbl", "bool",
# "enum", "pu64" (packed varints), "pf64" (packed fixed64), "pdbl" (packed doubles).
_Field = Tuple[int, str, str]  # (number, kind, nested schema name)

_SCHEMAS: Dict[str, Dict[str, _Field]] = {
    "request": {"resourceMetrics": (1, "msg", "resource_metrics")},
    "resource_metrics": {
        "resource": (1, "msg", "resource"),
        "scopeMetrics": (2, "msg", "scope_metrics"),
    },
    "resource": {"attributes": (1, "msg", "kv")},
    "kv": {"key": (1, "str", ""), "value": (2, "msg", "any")},
    "any": {
        "stringValue": (1, "str", ""),
        "boolValue": (2, "bool", ""),
        "intValue": (3, "i64", ""),
        "doubleValue": (4, "dbl", ""),
    },
    "scope_metrics": {"scope": (1, "msg", "scope"), "metrics": (2, "msg", "metric")},
    "scope": {"name": (1, "str", ""), "version": (2, "str", "")},
    "metric": {
        "name": (1, "str", ""),
        "description": (2, "str", ""),
        "unit": (3, "str", ""),
        "sum": (7, "msg", "sum"),
        "histogram": (9, "msg", "histogram"),
        "exponentialHistogram": (10, "msg", "exp_histogram"),
    },
    "sum": {
        "dataPoints": (1, "msg", "number_point"),
        "aggregationTemporality": (2, "enum", ""),
        "isMonotonic": (3, "bool", ""),
    },
    "number_point": {
        "startTimeUnixNano": (2, "f64", ""),
        "timeUnixNano": (3, "f64", ""),
        "asInt": (6, "sf64", ""),
        "attributes": (7, "msg", "kv"),
    },
    "histogram": {
        "dataPoints": (1, "msg", "histogram_point"),
        "aggregationTemporality": (2, "enum", ""),
    },
    "histogram_point": {
        "startTimeUnixNano": (2, "f64", ""),
        "timeUnixNano": (3, "f64", ""),
        "count": (4, "f64", ""),
        "sum": (5, "dbl", ""),
        "bucketCounts": (6, "pf64", ""),
        "explicitBounds": (7, "pdbl", ""),
        "attributes": (9, "msg", "kv"),
        "min": (11, "dbl", ""),
        "max": (12, "dbl", ""),
    },
    "exp_histogram": {
        "dataPoints": (1, "msg", "exp_point"),
        "aggregationTemporality": (2, "enum", ""),
    },
    "exp_point": {
        "attributes": (1, "msg", "kv"),
        "startTimeUnixNano": (2, "f64", ""),
        "timeUnixNano": (3, "f64", ""),
        "count": (4, "f64", ""),
        "sum": (5, "dbl", ""),
        "scale": (6, "s32", ""),
        "zeroCount": (7, "f64", ""),
        "positive": (8, "msg", "buckets"),
        "min": (12, "dbl", ""),
        "max": (13, "dbl", ""),
    },
    "buckets": {"offset": (1, "s32", ""), "bucketCounts": (2, "pu64", "")},
}

_FIXED64 = struct.Struct("<Q")
_SFIXED64 = struct.Struct("<q")
_DOUBLE = struct.Struct("<d")


def _varint(value: int, out: bytearray) -> None:
    value &= (1 << 64) - 1  # negative int64 values are ten-byte varints
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _tag(number: int, wire: int, out: bytearray) -> None:
    _varint((number << 3) | wire, out)


def _double(value: Any) -> float:
    if isinstance(value, str):  # JSON's "NaN", "Infinity", "-Infinity"
        return float(value.replace("Infinity", "inf"))
    return float(value)


def _message(data: Mapping[str, Any], schema: str, out: bytearray) -> None:
    fields = _SCHEMAS[schema]
    for key, value in data.items():
        number, kind, nested = fields[key]
        packed = kind in ("pu64", "pf64", "pdbl")
        values: List[Any] = value if isinstance(value, list) and not packed else [value]
        for item in values:
            if kind == "msg":
                body = bytearray()
                _message(item, nested, body)
                _tag(number, 2, out)
                _varint(len(body), out)
                out += body
            elif kind == "str":
                raw = item.encode("utf-8", "replace")
                _tag(number, 2, out)
                _varint(len(raw), out)
                out += raw
            elif kind in ("i64", "u64", "enum", "bool"):
                _tag(number, 0, out)
                _varint(int(item), out)
            elif kind == "s32":
                number_value = int(item)
                _tag(number, 0, out)
                _varint((number_value << 1) ^ (number_value >> 31), out)
            elif kind == "f64":
                _tag(number, 1, out)
                out += _FIXED64.pack(int(item))
            elif kind == "sf64":
                _tag(number, 1, out)
                out += _SFIXED64.pack(int(item))
            elif kind == "dbl":
                _tag(number, 1, out)
                out += _DOUBLE.pack(_double(item))
            else:  # packed repeated varints, fixed64s or doubles
                body = bytearray()
                for element in item:
                    if kind == "pu64":
                        _varint(int(element), body)
                    elif kind == "pf64":
                        body += _FIXED64.pack(int(element))
                    else:
                        body += _DOUBLE.pack(_double(element))
                _tag(number, 2, out)
                _varint(len(body), out)
                out += body


def encode_metrics_request(request: Mapping[str, Any]) -> bytes:
    """The protobuf ``ExportMetricsServiceRequest`` of a metrics request in OTLP JSON form."""
    out = bytearray()
    _message(request, "request", out)
    return bytes(out)
