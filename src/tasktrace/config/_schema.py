"""The config schema: one ``_Field`` per setting, saying how to check a TOML value and
parse a ``TASKTRACE_*`` variable, with the checkers they share."""

from __future__ import annotations

import math
import re
from _thread import TIMEOUT_MAX  # (what threading.TIMEOUT_MAX is, without importing threading)
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Tuple

from tasktrace import environment as _vars
from tasktrace._suggest import did_you_mean
from tasktrace.config._redaction import _Headers, redact_url
from tasktrace.config._settings import DEFAULT_PROPAGATE, INTEGRATIONS, PROPAGATE_MODES


class _WrongType(Exception):
    """A value has the wrong TOML type; the caller phrases the message from the field."""


class _BadValue(Exception):
    """A value has the right type but is not allowed: ``(what is wrong, the fix)``."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem, fix)
        self.problem = problem
        self.fix = fix


class _Field:
    """How one setting is checked and parsed.

    A plain class rather than a dataclass: this module is imported by every process the
    bootstrap starts, and each dataclass costs a fraction of a millisecond to build.
    """

    __slots__ = ("attribute", "check", "example", "expected", "from_text", "key", "name", "secret")

    def __init__(
        self,
        key: str,
        attribute: str,
        expected: str,
        example: str,
        check: Callable[[Any], Any],
        from_text: Callable[[str], Any],
        secret: bool = False,
    ) -> None:
        #: Dotted key, e.g. ``"reporter.timeout"``; ``name`` is its last part.
        self.key = key
        self.name = key.rpartition(".")[2]
        #: The attribute on Settings / ReporterSettings.
        self.attribute = attribute
        #: What the value must be, for "expected ..." messages.
        self.expected = expected
        #: A TOML value to show in fixes, e.g. ``5.0``.
        self.example = example
        #: TOML value -> normalized value; raises _WrongType or _BadValue.
        self.check = check
        #: Variable / flag text -> a value for ``check``; raises ValueError.
        self.from_text = from_text
        #: The value is a secret: never echo it.
        self.secret = secret


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
COMPRESSIONS = ("gzip", "none")
TEMPORALITIES = ("cumulative", "delta")
METRICS_PROTOCOLS = ("http/json", "http/protobuf")
METRICS_HISTOGRAMS = ("exponential", "explicit")
_NAME_RE = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_HEADER_NAME_RE = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"


def _is_number(value: object) -> bool:
    # bool is an int subclass; "enabled = true" must not pass as 1 second.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_string(value: Any) -> str:
    if not isinstance(value, str):
        raise _WrongType
    if not value.strip():
        raise _BadValue("is empty", "give a non-empty string or remove the key")
    return value


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _WrongType
    return value


#: The longest wait, in seconds, that this platform's locks and conditions accept
#: (``threading.TIMEOUT_MAX``, about 292 years on Linux); a longer one raises
#: ``OverflowError`` in the harvest thread or at exit, so it is refused here.
MAX_SECONDS = float(TIMEOUT_MAX)


def _check_seconds(value: Any) -> float:
    if not _is_number(value):
        raise _WrongType
    if not math.isfinite(value) or value <= 0:
        raise _BadValue(
            f"must be a positive number of seconds, got {value!r}",
            "use a number greater than 0, e.g. 5.0",
        )
    if value > MAX_SECONDS:
        raise _BadValue(
            f"must be at most {MAX_SECONDS:.0f} seconds (threading.TIMEOUT_MAX, the longest "
            f"wait this platform supports), got {value!r}",
            "use a smaller number of seconds, e.g. 5.0",
        )
    return float(value)


def _check_duration(value: Any) -> float:
    # A number is seconds (as a TASKTRACE_ variable's text arrives here, already parsed).
    if _is_number(value):
        if not math.isfinite(value) or value <= 0:
            raise _BadValue(f"must be greater than zero, got {value!r}", 'e.g. "7d"')
        return float(value)
    if not isinstance(value, str):
        raise _WrongType
    try:
        return _vars.parse_duration(value)
    except ValueError as exc:
        raise _BadValue(str(exc), 'write it like retention = "7d"') from None


def _check_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise _BadValue(f"must be greater than zero, got {value!r}", 'e.g. "1GiB"')
        return value
    if not isinstance(value, str):
        raise _WrongType
    try:
        return _vars.parse_size(value)
    except ValueError as exc:
        raise _BadValue(
            str(exc), 'write it like max_size = "1GiB" (or a number of bytes)'
        ) from None


def _int_checker(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _WrongType
        if value < minimum:
            raise _BadValue(
                f"must be at least {minimum}, got {value!r}",
                f"use a whole number of {minimum} or more",
            )
        return value

    return check


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number such as 1000, got {text!r}") from None


def _suggestion(word: str, choices: Any) -> str:
    hint = did_you_mean(word, choices)
    return f"{hint} " if hint else ""


def _choice_checker(choices: Tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _WrongType
        word = value.strip().lower()
        if word not in choices:
            raise _BadValue(
                f"{value!r} is not one of {', '.join(choices)}",
                f"{_suggestion(word, choices)}use one of: {', '.join(choices)}",
            )
        return word

    return check


def _check_reporter_types(value: Any) -> Tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise _WrongType
    fix = 'write type = "sqlite" or type = ["sqlite", "otlp"]'
    if not items:
        raise _BadValue("is an empty list", fix)
    names: List[str] = []
    for item in items:
        name = item.strip()
        if not re.fullmatch(_NAME_RE, name):
            raise _BadValue(f"{item!r} is not a reporter name", fix)
        if name in names:
            raise _BadValue(f"lists {name!r} twice", "list each reporter once")
        names.append(name)
    return tuple(names)


def _check_endpoint(value: Any) -> str:
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        raise _WrongType
    fix = 'write it like endpoint = "http://127.0.0.1:4318"'
    try:
        parts = urlsplit(value.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise _BadValue(f"{redact_url(value)!r} is not an http:// or https:// URL", fix)
    try:
        _ = parts.port  # parsed lazily: it raises for "host:notaport" and "host:99999"
    except ValueError:
        # The port's text is not echoed: in "https://user:secret/v1" it is a password.
        raise _BadValue(
            f"{redact_url(value)!r} has a port that is not a number from 0 to 65535", fix
        ) from None
    return value.strip()


def _check_headers(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _WrongType
    headers: Dict[str, str] = {}
    for name, header_value in value.items():
        # Messages name the header but never show its value: header values are secrets.
        if not isinstance(name, str) or not re.fullmatch(_HEADER_NAME_RE, name):
            raise _BadValue(
                f"{str(name)!r} is not a valid HTTP header name",
                "use letters, digits and '-' in header names",
            )
        if not isinstance(header_value, str):
            raise _BadValue(
                f"the value of header {name!r} is not a string (got {_kind(header_value)})",
                f'quote it: headers = {{ "{name}" = "..." }}',
            )
        if "\r" in header_value or "\n" in header_value:
            raise _BadValue(
                f"the value of header {name!r} contains a line break",
                "remove the line break from the value",
            )
        headers[name] = header_value
    return _Headers(headers)


def _identity(text: str) -> str:
    return text


def _check_attributes(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _WrongType
    attributes: Dict[str, str] = {}
    for name, attribute in value.items():
        if not isinstance(attribute, (str, int, float)) or isinstance(attribute, bool):
            raise _BadValue(
                f"the value of {str(name)!r} is {_kind(attribute)}",
                f'give a string: resource_attributes = {{ "{name}" = "..." }}',
            )
        attributes[str(name)] = str(attribute)
    return MappingProxyType(attributes)


def _resource_attributes(text: str) -> Mapping[str, str]:
    from tasktrace.resource import resource_attributes_from_text

    return resource_attributes_from_text(text)


def _temporality(text: str) -> str:
    # OpenTelemetry's "lowmemory" is delta for counters and histograms: all we send.
    word = text.strip().lower()
    return "delta" if word == "lowmemory" else word


def _metrics_exporter(text: str) -> bool:
    """``OTEL_METRICS_EXPORTER`` (a comma-separated list, as the specification says): the
    value of ``reporter.metrics``; ``none`` turns the metrics off, ``otlp`` keeps them on,
    and an exporter tasktrace does not have is an error that says so."""
    words = {word.strip().lower() for word in text.split(",") if word.strip()}
    if not words or "none" in words:
        return False
    if words == {"otlp"}:
        return True
    raise ValueError(
        f"tasktrace exports metrics over OTLP only (got {text!r}): use otlp, or none to "
        "send no metrics"
    )


def _histogram_aggregation(text: str) -> str:
    """``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``'s two values, as the
    specification names them, for ``reporter.metrics_histogram`` (its own words pass)."""
    word = text.strip().lower()
    return {
        "base2_exponential_bucket_histogram": "exponential",
        "explicit_bucket_histogram": "explicit",
    }.get(word, word)


def _otel_timeout(text: str) -> float:
    """``OTEL_EXPORTER_OTLP_TIMEOUT``: milliseconds, as the specification says."""
    milliseconds = _vars.parse_float(text)
    if milliseconds <= 0:
        raise ValueError(f"expected a positive number of milliseconds, got {text!r}")
    return milliseconds / 1000.0


def _otel_disabled(text: str) -> bool:
    """``OTEL_SDK_DISABLED``: only ``true`` (any case) disables, as the specification says;
    the result is the value of ``enabled``."""
    return text.strip().lower() != "true"


def _seconds_field(key: str, example: str) -> _Field:
    return _Field(
        key,
        key.rpartition(".")[2],
        "a number of seconds",
        example,
        _check_seconds,
        _vars.parse_float,
    )


_TOP_FIELDS: Dict[str, _Field] = {
    f.name: f
    for f in (
        _Field("app_name", "app_name", "a string", '"billing-worker"', _check_string, _identity),
        _Field("enabled", "enabled", "a boolean", "true", _check_bool, _vars.parse_bool),
        _Field(
            "log_level",
            "log_level",
            f"one of {', '.join(LOG_LEVELS)}",
            '"warning"',
            _choice_checker(LOG_LEVELS),
            _identity,
        ),
        _Field("log_file", "log_file", "a string", '"stderr"', _check_string, _identity),
        _seconds_field("harvest_interval", "5.0"),
        _seconds_field("shutdown_timeout", "2.5"),
        _Field("buffer_size", "buffer_size", "an integer", "10000", _int_checker(1), _parse_int),
        _Field("max_segments", "max_segments", "an integer", "1000", _int_checker(0), _parse_int),
        _Field("cpu_time", "cpu_time", "a boolean", "true", _check_bool, _vars.parse_bool),
        _Field("app_version", "app_version", "a string", '"1.4.2"', _check_string, _identity),
        _Field(
            "resource_attributes",
            "resource_attributes",
            "a table of strings",
            '{ "team" = "billing" }',
            _check_attributes,
            _resource_attributes,
        ),
    )
}

_REPORTER_FIELDS: Dict[str, _Field] = {
    f.name: f
    for f in (
        _Field(
            "reporter.type",
            "types",
            "a reporter name or a list of names",
            '["sqlite", "otlp"]',
            _check_reporter_types,
            _vars.parse_list,
        ),
        _Field("reporter.path", "path", "a string", '"tasktrace.db"', _check_string, _identity),
        _Field(
            "reporter.endpoint",
            "endpoint",
            "a URL string",
            '"http://127.0.0.1:4318"',
            _check_endpoint,
            _identity,
        ),
        _Field(
            "reporter.headers",
            "headers",
            "a table of strings",
            '{ "api-key" = "..." }',
            _check_headers,
            _vars.parse_headers,
            secret=True,
        ),
        _Field(
            "reporter.traces_endpoint",
            "traces_endpoint",
            "a URL string",
            '"http://127.0.0.1:4318/v1/traces"',
            _check_endpoint,
            _identity,
        ),
        _Field(
            "reporter.metrics_endpoint",
            "metrics_endpoint",
            "a URL string",
            '"http://127.0.0.1:4318/v1/metrics"',
            _check_endpoint,
            _identity,
        ),
        _Field("reporter.metrics", "metrics", "a boolean", "false", _check_bool, _vars.parse_bool),
        _Field(
            "reporter.metrics_temporality",
            "metrics_temporality",
            'one of "cumulative", "delta"',
            '"cumulative"',
            _choice_checker(TEMPORALITIES),
            _temporality,
        ),
        _Field(
            "reporter.metrics_protocol",
            "metrics_protocol",
            'one of "http/json", "http/protobuf"',
            '"http/json"',
            _choice_checker(METRICS_PROTOCOLS),
            _identity,
        ),
        _Field(
            "reporter.metrics_histogram",
            "metrics_histogram",
            'one of "exponential", "explicit"',
            '"explicit"',
            _choice_checker(METRICS_HISTOGRAMS),
            _identity,
        ),
        _seconds_field("reporter.timeout", "10.0"),
        _Field("reporter.ca_bundle", "ca_bundle", "a string", '"ca.pem"', _check_string, _identity),
        _Field(
            "reporter.compression",
            "compression",
            'one of "gzip", "none"',
            '"gzip"',
            _choice_checker(COMPRESSIONS),
            _identity,
        ),
        _Field(
            "reporter.max_rows_per_name",
            "max_rows_per_name",
            "an integer (rows per task name and minute; 0: all)",
            "600",
            _int_checker(0),
            _parse_int,
        ),
        _Field(
            "reporter.max_error_rows_per_name",
            "max_error_rows_per_name",
            "an integer (errored rows per task name and minute; 0: all)",
            "60",
            _int_checker(0),
            _parse_int,
        ),
        _Field(
            "reporter.retention",
            "retention",
            'a duration such as "7d"',
            '"7d"',
            _check_duration,
            _vars.parse_duration,
        ),
        _Field(
            "reporter.max_size",
            "max_size",
            'a size such as "1GiB"',
            '"1GiB"',
            _check_size,
            _vars.parse_size,
        ),
    )
}

_INTEGRATION_FIELDS: Dict[str, _Field] = {
    f.name: f
    for f in (
        *(
            _Field(
                f"integrations.{name}", name, "a boolean", "false", _check_bool, _vars.parse_bool
            )
            for name in INTEGRATIONS
        ),
        _Field(
            "integrations.propagate",
            "propagate",
            f"one of {', '.join(PROPAGATE_MODES)}",
            f'"{DEFAULT_PROPAGATE}"',
            _choice_checker(PROPAGATE_MODES),
            _identity,
        ),
    )
}

_FIELDS: Dict[str, _Field] = {
    **_TOP_FIELDS,
    **{f.key: f for f in _REPORTER_FIELDS.values()},
    **{f.key: f for f in _INTEGRATION_FIELDS.values()},
}

#: (``integrations`` last: an ``[env.<name>]`` table takes the first three.)
_TABLE_KEYS = ("reporter", "background_task", "function_trace", "env", "integrations")
_TARGET_KEYS = {
    "background_task": (
        "function",
        "name",
        "group",
        "application",
        "enabled",
        "max_duration",
        "schedule",
        "grace",
        "timezone",
    ),
    "function_trace": ("function", "name", "group", "enabled"),
}

#: Variable -> field; for endpoint and headers the TASKTRACE_ name beats the OTel one.
_VARIABLES: Tuple[Tuple[Tuple[str, ...], str, str], ...] = (
    ((_vars.TASKTRACE_APP_NAME,), "app_name", "billing-worker"),
    ((_vars.TASKTRACE_ENABLED,), "enabled", "true"),
    ((_vars.TASKTRACE_LOG_LEVEL,), "log_level", "warning"),
    ((_vars.TASKTRACE_LOG,), "log_file", "stderr"),
    ((_vars.TASKTRACE_HARVEST_INTERVAL,), "harvest_interval", "5"),
    ((_vars.TASKTRACE_SHUTDOWN_TIMEOUT,), "shutdown_timeout", "2.5"),
    ((_vars.TASKTRACE_CPU_TIME,), "cpu_time", "true"),
    ((_vars.TASKTRACE_REPORTER,), "reporter.type", "sqlite,otlp"),
    ((_vars.TASKTRACE_DB,), "reporter.path", "/var/lib/tasktrace.db"),
    ((_vars.TASKTRACE_RETENTION,), "reporter.retention", "30d"),
    ((_vars.TASKTRACE_DB_MAX_SIZE,), "reporter.max_size", "500MB"),
    (
        (_vars.TASKTRACE_OTLP_ENDPOINT, _vars.OTEL_EXPORTER_OTLP_ENDPOINT),
        "reporter.endpoint",
        "http://127.0.0.1:4318",
    ),
    (
        (_vars.TASKTRACE_OTLP_HEADERS, _vars.OTEL_EXPORTER_OTLP_HEADERS),
        "reporter.headers",
        "api-key=...",
    ),
    ((_vars.TASKTRACE_APP_VERSION,), "app_version", "1.4.2"),
)

#: The other OpenTelemetry variables: (variable, key, parser, example). They are applied
#: over the config file and under every ``TASKTRACE_*`` variable and flag; each parser
#: turns the variable's text into a value for the field's ``check``.
_OTEL_VARIABLES: Tuple[Tuple[str, str, Callable[[str], Any], str], ...] = (
    (_vars.OTEL_SDK_DISABLED, "enabled", _otel_disabled, "true"),
    (_vars.OTEL_RESOURCE_ATTRIBUTES, "resource_attributes", _resource_attributes, "team=billing"),
    (
        _vars.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        "reporter.traces_endpoint",
        _identity,
        "http://collector:4318/v1/traces",
    ),
    (
        _vars.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
        "reporter.metrics_endpoint",
        _identity,
        "http://collector:4318/v1/metrics",
    ),
    (_vars.OTEL_METRICS_EXPORTER, "reporter.metrics", _metrics_exporter, "none"),
    (
        _vars.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
        "reporter.metrics_temporality",
        _temporality,
        "delta",
    ),
    (
        _vars.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
        "reporter.metrics_protocol",
        _identity,
        "http/protobuf",
    ),
    (
        _vars.OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
        "reporter.metrics_histogram",
        _histogram_aggregation,
        "explicit_bucket_histogram",
    ),
    (_vars.OTEL_EXPORTER_OTLP_TIMEOUT, "reporter.timeout", _otel_timeout, "10000"),
    (_vars.OTEL_EXPORTER_OTLP_COMPRESSION, "reporter.compression", _identity, "gzip"),
    (
        _vars.OTEL_EXPORTER_OTLP_CERTIFICATE,
        "reporter.ca_bundle",
        _identity,
        "/etc/ssl/collector-ca.pem",
    ),
)


def _kind(value: object) -> str:
    """The TOML name of a value's type, with an article: "a string", "a table"."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    if value is None:
        return "no value"
    name = type(value).__name__
    return {"datetime": "a date-time", "date": "a date", "time": "a time"}.get(name, f"a {name}")


def _shown(value: object) -> str:
    """A short rendering of a wrong value for an "expected X, got Y" message."""
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40):
        return f" ({value!r})"
    return ""


def _flag_for(key: str) -> str:
    return "--" + key.replace(".", "-").replace("_", "-")
