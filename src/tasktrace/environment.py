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
from typing import Dict, List

__all__ = [
    "ALL_VARIABLES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "TASKTRACE_APP_NAME",
    "TASKTRACE_CONFIG_FILE",
    "TASKTRACE_CPU_TIME",
    "TASKTRACE_DB",
    "TASKTRACE_ENABLED",
    "TASKTRACE_ENVIRONMENT",
    "TASKTRACE_HARVEST_INTERVAL",
    "TASKTRACE_LOG",
    "TASKTRACE_LOG_LEVEL",
    "TASKTRACE_OTLP_ENDPOINT",
    "TASKTRACE_OTLP_HEADERS",
    "TASKTRACE_REPORTER",
    "TASKTRACE_SHUTDOWN_TIMEOUT",
    "TASKTRACE_STRICT",
    "parse_bool",
    "parse_float",
    "parse_headers",
    "parse_list",
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
    TASKTRACE_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    TASKTRACE_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_HEADERS,
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
