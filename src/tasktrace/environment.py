"""The ``TASKTRACE_*`` environment variables, as documented constants, and their parsers.

Each constant is the name of one variable; its docstring says what it sets and how its
value is written. The parsers turn a variable's text into a value or raise ``ValueError``
with a message that says what was expected; they never echo a value that may be secret
(``parse_headers``), so callers may put their messages in logs as they are.
:mod:`tasktrace.config` decides what a bad value means (an error, or a warning and the
default), names the variable and applies the precedence rules.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

__all__ = [
    "ALL_VARIABLES",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_METRICS_EXPORTER",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "TASKTRACE_APP_NAME",
    "TASKTRACE_APP_VERSION",
    "TASKTRACE_CONFIG_FILE",
    "TASKTRACE_CPU_TIME",
    "TASKTRACE_DB",
    "TASKTRACE_DB_MAX_SIZE",
    "TASKTRACE_ENABLED",
    "TASKTRACE_ENVIRONMENT",
    "TASKTRACE_HARVEST_INTERVAL",
    "TASKTRACE_LOG",
    "TASKTRACE_LOG_LEVEL",
    "TASKTRACE_OTLP_ENDPOINT",
    "TASKTRACE_OTLP_HEADERS",
    "TASKTRACE_REPORTER",
    "TASKTRACE_RETENTION",
    "TASKTRACE_SHUTDOWN_TIMEOUT",
    "TASKTRACE_STRICT",
    "parse_bool",
    "parse_duration",
    "parse_float",
    "parse_headers",
    "parse_list",
    "parse_size",
]

TASKTRACE_CONFIG_FILE = "TASKTRACE_CONFIG_FILE"
"""Path of the config file to use; beaten only by an explicit ``--config``/``config_file``."""

TASKTRACE_ENVIRONMENT = "TASKTRACE_ENVIRONMENT"
"""Name of the ``[env.<name>]`` table to apply over the base file, e.g. ``production``."""

TASKTRACE_STRICT = "TASKTRACE_STRICT"
"""Boolean: configuration and target errors are fatal instead of logged and skipped."""

TASKTRACE_APP_NAME = "TASKTRACE_APP_NAME"
"""Sets ``app_name``: the application every transaction is reported under."""

TASKTRACE_CPU_TIME = "TASKTRACE_CPU_TIME"
"""Boolean, sets ``cpu_time``: measure each transaction's thread CPU time (two clock reads
that are system calls, about 0.2-0.5 us each, per task)."""

TASKTRACE_ENABLED = "TASKTRACE_ENABLED"
"""Boolean, sets ``enabled``; ``false`` means nothing is patched and nothing recorded."""

TASKTRACE_LOG_LEVEL = "TASKTRACE_LOG_LEVEL"
"""Sets ``log_level``: ``critical``, ``error``, ``warning``, ``info`` or ``debug``."""

TASKTRACE_LOG = "TASKTRACE_LOG"
"""Sets ``log_file``: ``stderr``, ``stdout`` or a file path."""

TASKTRACE_HARVEST_INTERVAL = "TASKTRACE_HARVEST_INTERVAL"
"""Seconds (a positive number), sets ``harvest_interval``: the time between deliveries."""

TASKTRACE_SHUTDOWN_TIMEOUT = "TASKTRACE_SHUTDOWN_TIMEOUT"
"""Seconds (a positive number), sets ``shutdown_timeout``: the most time spent at exit."""

TASKTRACE_REPORTER = "TASKTRACE_REPORTER"
"""Comma-separated reporter names, sets ``reporter.type``, e.g. ``sqlite,otlp``."""

TASKTRACE_DB = "TASKTRACE_DB"
"""Sets ``reporter.path``: the SQLite database (``sqlite``) or output file (``jsonl``)."""

TASKTRACE_OTLP_ENDPOINT = "TASKTRACE_OTLP_ENDPOINT"
"""Sets ``reporter.endpoint``, the OTLP/HTTP base URL; wins over the OTel variable."""

OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""The OpenTelemetry standard variable, used for ``reporter.endpoint`` when
``TASKTRACE_OTLP_ENDPOINT`` is not set."""

TASKTRACE_OTLP_HEADERS = "TASKTRACE_OTLP_HEADERS"
"""Sets ``reporter.headers`` as ``name=value,name2=value2`` (values percent-decoded, as the
OpenTelemetry specification writes them). Secret: never printed or logged."""

OTEL_EXPORTER_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
"""The OpenTelemetry standard variable, used for ``reporter.headers`` when
``TASKTRACE_OTLP_HEADERS`` is not set. Secret: never printed or logged."""

TASKTRACE_RETENTION = "TASKTRACE_RETENTION"
"""Sets ``reporter.retention``: how long the SQLite store keeps data, e.g. ``7d``, ``12h``."""

TASKTRACE_DB_MAX_SIZE = "TASKTRACE_DB_MAX_SIZE"
"""Sets ``reporter.max_size``: the SQLite store's size limit, e.g. ``1GiB``, ``500MB``."""

TASKTRACE_APP_VERSION = "TASKTRACE_APP_VERSION"
"""Sets ``app_version``: the ``service.version`` of the OTLP resource, e.g. ``1.4.2``."""

OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
"""The app name when neither ``TASKTRACE_APP_NAME``, a flag nor the file's ``app_name`` sets
one (OTLP's ``service.name``)."""

OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
"""Sets ``resource_attributes``: ``key=value`` pairs separated by commas, percent-decoded,
added to (and overriding) the OTLP resource's detected attributes; malformed pairs are
skipped with one warning."""

OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
"""Sets ``reporter.traces_endpoint``: the full URL spans are posted to (used as given)."""

OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
"""Sets ``reporter.metrics_endpoint``: the full URL metrics are posted to (used as given)."""

OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
"""Sets ``reporter.metrics``: ``none`` posts no metrics (for a collector that takes traces
only), ``otlp`` (the default) posts them; other exporters are a configuration error."""

OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE = (
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
)
"""Sets ``reporter.metrics_temporality``: ``cumulative`` (the default) or ``delta``
(``lowmemory`` means delta for everything tasktrace sends)."""

OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
"""Sets ``reporter.metrics_protocol``: ``http/json`` (the default) or ``http/protobuf``
(spans are always ``http/json``)."""

OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION = (
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
)
"""Sets ``reporter.metrics_histogram``: ``base2_exponential_bucket_histogram`` (the
default: ``exponential``) or ``explicit_bucket_histogram`` (``explicit``: fixed bounds from
5 ms to 1 h, which the OpenTelemetry Collector's Prometheus scrape exporter can show)."""

OTEL_EXPORTER_OTLP_TIMEOUT = "OTEL_EXPORTER_OTLP_TIMEOUT"
"""Milliseconds, sets ``reporter.timeout`` (which is in seconds)."""

OTEL_EXPORTER_OTLP_COMPRESSION = "OTEL_EXPORTER_OTLP_COMPRESSION"
"""Sets ``reporter.compression``: ``gzip`` or ``none``."""

OTEL_EXPORTER_OTLP_CERTIFICATE = "OTEL_EXPORTER_OTLP_CERTIFICATE"
"""Sets ``reporter.ca_bundle``: the CA certificate file (PEM) that verifies an https
collector."""

OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""``true`` disables tasktrace as ``enabled = false`` does (any other value: no effect);
``TASKTRACE_ENABLED`` wins over it."""

#: Every variable tasktrace reads, in the order ``show-config`` lists them.
ALL_VARIABLES = (
    TASKTRACE_CONFIG_FILE,
    TASKTRACE_ENVIRONMENT,
    TASKTRACE_STRICT,
    TASKTRACE_APP_NAME,
    TASKTRACE_ENABLED,
    TASKTRACE_LOG_LEVEL,
    TASKTRACE_LOG,
    TASKTRACE_HARVEST_INTERVAL,
    TASKTRACE_SHUTDOWN_TIMEOUT,
    TASKTRACE_CPU_TIME,
    TASKTRACE_REPORTER,
    TASKTRACE_DB,
    TASKTRACE_RETENTION,
    TASKTRACE_DB_MAX_SIZE,
    TASKTRACE_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    TASKTRACE_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_HEADERS,
    TASKTRACE_APP_VERSION,
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_METRICS_EXPORTER,
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_SDK_DISABLED,
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(text: str) -> bool:
    """Parse a boolean variable.

    Args:
        text: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``, any case,
            surrounding blanks ignored.

    Returns:
        The boolean.

    Raises:
        ValueError: the text is none of those words.
    """
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false (also 1/0, yes/no, on/off), got {text!r}")


def parse_float(text: str) -> float:
    """Parse a finite number such as ``5``, ``2.5`` or ``1e-3``.

    Raises:
        ValueError: the text is not a number, or is ``nan`` or infinite.
    """
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number such as 2.5, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "": 1,
    "k": 1000,
    "ki": 1024,
    "m": 1000**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gi": 1024**3,
}
#: The compiled patterns, made on first use: ``re`` costs milliseconds to import, and the
#: bootstrap (which imports this module in every process) has no other use for it.
_PATTERNS: Dict[str, Any] = {}


def _pattern(name: str) -> Any:
    pattern = _PATTERNS.get(name)
    if pattern is None:
        import re

        source = {
            "duration": r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$",
            "size": r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*$",
        }[name]
        pattern = _PATTERNS[name] = re.compile(source, re.IGNORECASE)
    return pattern


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``45s``, ``30m``, ``2h`` or ``7d`` (as ``--since``).

    Raises:
        ValueError: the text is not a number followed by one of s, m, h, d, or is zero.
    """
    match = _pattern("duration").match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a number followed by s, m, h or d, "
            "e.g. 45s, 30m, 2h, 7d"
        )
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be greater than zero")
    return value


def parse_size(text: str) -> int:
    """Bytes in a size such as ``500MB``, ``1GiB``, ``200KiB`` or ``4096`` (B, KB/KiB,
    MB/MiB, GB/GiB, case-insensitive; KB is 1000 bytes, KiB 1024).

    Raises:
        ValueError: the text is not a number with one of those units, or is zero.
    """
    match = _pattern("size").match(text)
    if match is None:
        raise ValueError(
            f"invalid size {text!r}: use a number followed by B, KB, KiB, MB, MiB, GB or "
            "GiB, e.g. 500MB, 1GiB"
        )
    value = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
    if value <= 0:
        raise ValueError(f"invalid size {text!r}: it must be greater than zero")
    return value


def parse_list(text: str) -> List[str]:
    """Parse a comma-separated list; blanks around items and empty items are dropped.

    Raises:
        ValueError: no item is left.
    """
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ValueError(f"expected a comma-separated list of names, got {text!r}")
    return items


def parse_headers(text: str) -> Dict[str, str]:
    """Parse ``name=value,name2=value2`` into a dict, the OpenTelemetry way.

    Names and values are percent-decoded and stripped of surrounding blanks; empty entries
    are ignored. Error messages name entries by position and never contain a value.

    Raises:
        ValueError: an entry has no ``=`` or an empty name.
    """
    from urllib.parse import unquote  # late: only needed when the variable is set

    headers: Dict[str, str] = {}
    for index, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        name = unquote(name).strip()
        if not sep:
            raise ValueError(
                f"entry {index} has no '=' (expected name=value pairs separated by commas)"
            )
        if not name:
            raise ValueError(f"entry {index} has an empty header name before '='")
        headers[name] = unquote(value).strip()
    return headers
