"""Typed, frozen settings, built by a pure ``parse`` from TOML data, plus a thin ``load``.

The pieces, from the inside out:

* the immutable settings every other module reads (``Settings``, ``ReporterSettings``,
  ``TargetSettings``): named tuples rather than dataclasses, because ``dataclasses``
  imports ``inspect`` and this module is loaded by the bootstrap in every process (about
  6 ms of start-up); derive changed copies with ``settings._replace(...)``;
* :func:`parse` -- pure: TOML data + variables + flags -> ``Settings``, applying the
  precedence *flag > TASKTRACE_* variable > [env.<name>] table > base file > default*,
  recording where each value came from, and collecting *every* problem before raising one
  :class:`~tasktrace.exceptions.ConfigurationError`;
* :func:`find_config_file` and :func:`load` -- the only file I/O;
* :func:`settings_from_environment` -- defaults + variables for a process that never calls
  ``initialize()``; it warns instead of raising;
* :func:`describe`, :func:`redact_url`, :func:`redacted_headers` and ``STARTER_CONFIG`` for
  ``show-config`` and ``generate-config``.

Importing this module must stay cheap (the bootstrap runs in every Python process), so
``tomllib``, ``difflib``, ``urllib`` and ``logging`` are imported inside the functions that
need them, regular expressions are compiled on first use, and ``load`` works with
``os.path`` (``pathlib`` is imported only by the public :func:`find_config_file`).
"""

from __future__ import annotations

import math
import os
import re
from _thread import TIMEOUT_MAX  # (what threading.TIMEOUT_MAX is, without importing threading)
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

from tasktrace import environment as _vars
from tasktrace.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DEFAULT_APP_NAME",
    "MAX_SECONDS",
    "STARTER_CONFIG",
    "ReporterSettings",
    "Settings",
    "TargetSettings",
    "describe",
    "find_config_file",
    "load",
    "parse",
    "redact_url",
    "redacted_headers",
    "settings_from_environment",
]

DEFAULT_APP_NAME = "Python Application"

_EMPTY: Mapping[str, str] = MappingProxyType({})


class ReporterSettings(NamedTuple):
    """Where finished transactions go (``[reporter]``).

    ``repr()`` (and so ``repr()``/``str()`` of ``Settings``) redacts header values and any
    password or token in ``endpoint``.
    """

    #: Reporter names, in order: built-ins ``sqlite``, ``otlp``, ``console``, ``jsonl``, or
    #: the name of a plugin in the ``tasktrace.reporters`` entry-point group.
    types: Tuple[str, ...] = ("sqlite",)
    #: The SQLite database (``sqlite``) or output file (``jsonl``); None means the default
    #: (``$XDG_DATA_HOME/tasktrace/tasktrace.db`` or ``~/.local/share/tasktrace/...``).
    path: Optional[str] = None
    #: OTLP/HTTP base URL; ``/v1/traces`` is appended unless it is already there.
    endpoint: str = "http://127.0.0.1:4318"
    #: Extra HTTP headers for the OTLP exporter. Secret: never printed or logged.
    headers: Mapping[str, str] = _EMPTY
    #: Seconds one export may take, retries included.
    timeout: float = 10.0
    #: A CA bundle file for TLS verification of the collector (None: httpx's default).
    ca_bundle: Optional[str] = None
    #: ``"gzip"`` or ``"none"``.
    compression: str = "gzip"
    #: SQLite: most rows stored per task name and harvest (errors always, then a random
    #: sample); counts, errors and totals stay exact in the metrics table. 0: no limit.
    max_rows_per_name: int = 1_000

    def __repr__(self) -> str:
        return (
            f"ReporterSettings(types={self.types!r}, path={self.path!r}, "
            f"endpoint={redact_url(self.endpoint)!r}, "
            f"headers={redacted_headers(self.headers)!r}, timeout={self.timeout!r}, "
            f"ca_bundle={self.ca_bundle!r}, compression={self.compression!r}, "
            f"max_rows_per_name={self.max_rows_per_name!r})"
        )


class TargetSettings(NamedTuple):
    """One ``[[background_task]]`` or ``[[function_trace]]`` entry."""

    #: ``"background_task"`` or ``"function_trace"``.
    kind: str
    #: ``"module:object.path"``, globs allowed per segment of the object path.
    function: str
    name: Optional[str] = None
    group: Optional[str] = None
    application: Optional[str] = None
    enabled: bool = True
    #: Where the entry came from, e.g. ``"tasktrace.toml: background_task[2]"``.
    source: str = ""

    @property
    def module(self) -> str:
        """The module part of ``function``."""
        return self.function.partition(":")[0]

    @property
    def object_path(self) -> str:
        """The object path part of ``function``."""
        return self.function.partition(":")[2]


class Settings(NamedTuple):
    """The effective settings of the agent."""

    app_name: str = DEFAULT_APP_NAME
    enabled: bool = True
    log_level: str = "warning"
    #: ``"stderr"``, ``"stdout"`` or a file path.
    log_file: str = "stderr"
    #: Seconds between deliveries by the harvest thread.
    harvest_interval: float = 5.0
    #: Most seconds spent delivering at exit.
    shutdown_timeout: float = 2.5
    #: Most finished transactions held between harvests; the oldest are dropped beyond it.
    buffer_size: int = 10_000
    #: Most function traces kept per transaction; further ones are counted, not kept.
    max_segments: int = 1_000
    #: Measure each transaction's thread CPU time (``TransactionRecord.cpu_time``; None
    #: when off). Off by default: the thread CPU clock is a system call, two per task.
    cpu_time: bool = False
    reporter: ReporterSettings = ReporterSettings()
    background_tasks: Tuple[TargetSettings, ...] = ()
    function_traces: Tuple[TargetSettings, ...] = ()
    #: The ``[env.<name>]`` table applied, if any.
    environment: Optional[str] = None
    #: The file the settings came from, if any.
    config_file: Optional[str] = None
    #: ``TASKTRACE_STRICT``: configuration and target errors are fatal.
    strict: bool = False
    #: For each setting's dotted key, where its value came from: ``"default"``, a file
    #: path, ``"<file> [env.X]"``, a variable name or ``"--flag"``.
    sources: Mapping[str, str] = _EMPTY


# --------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------

_REDACTED = "***"
# Query parameters whose values are credentials in practice (api_key, token, X-Signature,
# password, ...). Over-redacting an innocent parameter is harmless; leaking one is not.
# Patterns are compiled on first use (``re`` caches them): compiling at import time would
# cost every process the bootstrap starts, most of which never need them.
_SECRET_PARAM = r"(?i)token|key|secret|pass|pwd|auth|sig|credential|session"


def redact_url(url: str) -> str:
    """``url`` with its userinfo and credential-like query values replaced by ``***``.

    ``https://user:pw@host/x?api_key=1&a=2`` becomes ``https://user:***@host/x?api_key=***&a=2``;
    a userinfo without a password is treated as a token and hidden whole. Text that is not
    a parsable URL is returned as ``"<unparsable URL>"`` rather than risk echoing a secret.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not isinstance(url, str):
        return "<not a URL>"
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{_REDACTED}@{hostport}" if has_password else f"{_REDACTED}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(re.search(_SECRET_PARAM, name) for name, _ in pairs):
                query = urlencode(
                    [(n, _REDACTED if re.search(_SECRET_PARAM, n) else v) for n, v in pairs],
                    safe="*",
                )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def redacted_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """A copy of ``headers`` with every value replaced by ``***`` (names are kept)."""
    return {str(name): _REDACTED for name in headers}


class _Headers(Mapping[str, str]):
    """A read-only header mapping whose ``repr()`` never shows the values."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(redacted_headers(self._data))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._data) == dict(other)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))


# --------------------------------------------------------------------------------------
# The schema: one _Field per setting, with how to check a TOML value and parse a variable
# --------------------------------------------------------------------------------------


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
    import difflib  # late: only needed for a mistake

    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


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
            "an integer",
            "1000",
            _int_checker(0),
            _parse_int,
        ),
    )
}

_FIELDS: Dict[str, _Field] = {
    **_TOP_FIELDS,
    **{f.key: f for f in _REPORTER_FIELDS.values()},
}

_TABLE_KEYS = ("reporter", "background_task", "function_trace", "env")
_TARGET_KEYS = {
    "background_task": ("function", "name", "group", "application", "enabled"),
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


# --------------------------------------------------------------------------------------
# The builder: layers applied from lowest to highest precedence, problems collected
# --------------------------------------------------------------------------------------


class _Builder:
    """Accumulates values, their sources and every problem found."""

    def __init__(self) -> None:
        settings_defaults = Settings()
        reporter_defaults = ReporterSettings()
        self.values: Dict[str, Any] = {}
        for key, field in _FIELDS.items():
            owner: Any = reporter_defaults if key.startswith("reporter.") else settings_defaults
            self.values[key] = getattr(owner, field.attribute)
        self.sources: Dict[str, str] = dict.fromkeys(_FIELDS, "default")
        self.problems: List[str] = []
        self.targets: Dict[str, List[TargetSettings]] = {
            "background_task": [],
            "function_trace": [],
        }

    def set_toml(self, field: _Field, value: Any, where: str, keypath: str, label: str) -> None:
        """Apply a TOML value of ``field`` found at ``keypath`` in ``where``."""
        try:
            self.values[field.key] = field.check(value)
            self.sources[field.key] = label
        except _WrongType:
            shown = "" if field.secret else _shown(value)
            self.problems.append(
                f"{where}: {keypath}: expected {field.expected}, got {_kind(value)}{shown}; "
                f"write it like {field.name} = {field.example}"
            )
        except _BadValue as exc:
            self.problems.append(f"{where}: {keypath}: {exc.problem}; {exc.fix}")

    def set_text(self, field: _Field, text: str, origin: str, example: str) -> None:
        """Apply a variable's text; ``origin`` is e.g. ``"environment variable X"``."""
        label = origin.rpartition(" ")[2]
        try:
            self.values[field.key] = field.check(field.from_text(text))
            self.sources[field.key] = label
        except ValueError as exc:
            self.problems.append(f"{origin}: {exc}; set it like {label}={example}")
        except _WrongType:  # pragma: no cover - from_text always returns the right type
            self.problems.append(f"{origin}: expected {field.expected}")
        except _BadValue as exc:
            self.problems.append(f"{origin}: {exc.problem}; {exc.fix}")

    def set_flag(self, field: _Field, value: Any, flag: str) -> None:
        """Apply a command-line flag; strings are parsed like variables."""
        try:
            if isinstance(value, str) and field.from_text is not _identity:
                value = field.from_text(value)
            self.values[field.key] = field.check(value)
            self.sources[field.key] = flag
        except ValueError as exc:
            self.problems.append(f"command-line flag {flag}: {exc}")
        except _WrongType:
            shown = "" if field.secret else _shown(value)
            self.problems.append(
                f"command-line flag {flag}: expected {field.expected}, got {_kind(value)}{shown}"
            )
        except _BadValue as exc:
            self.problems.append(f"command-line flag {flag}: {exc.problem}; {exc.fix}")

    def unknown(self, where: str, keypath: str, key: object, known: Any, what: str) -> None:
        self.problems.append(
            f"{where}: {keypath}: unknown key {str(key)!r} {what}; "
            f"{_suggestion(str(key), known)}remove it or fix its spelling "
            f"(known keys: {', '.join(known)})"
        )

    # -- tables ---------------------------------------------------------------------

    def apply_table(
        self, table: Mapping[Any, Any], where: str, prefix: str, label: str, in_env: bool
    ) -> None:
        """Apply a base table (``in_env`` False) or an ``[env.X]`` table."""
        for key, value in table.items():
            keypath = f"{prefix}{key}"
            if key in _TOP_FIELDS:
                self.set_toml(_TOP_FIELDS[key], value, where, keypath, label)
            elif key == "reporter":
                self.apply_reporter(value, where, keypath, label)
            elif key in _TARGET_KEYS:
                self.targets[key].extend(self.parse_targets(key, value, where, keypath))
            elif key == "env":
                if in_env:
                    self.problems.append(
                        f"{where}: {keypath}: [env] tables cannot be nested; "
                        f"move [{keypath}.*] to the top level as [env.<name>]"
                    )
                # At the top level, [env.*] tables are handled by the caller.
            else:
                known = (
                    [*_TOP_FIELDS, *_TABLE_KEYS] if not in_env else [*_TOP_FIELDS, *_TABLE_KEYS[:3]]
                )
                where_text = "in an [env.<name>] table" if in_env else "at the top level"
                if key == "strict":
                    self.problems.append(
                        f"{where}: {keypath}: 'strict' cannot be set in the file; "
                        f"set {_vars.TASKTRACE_STRICT}=1 in the environment instead"
                    )
                else:
                    self.unknown(where, keypath, key, known, where_text)

    def apply_reporter(self, value: Any, where: str, keypath: str, label: str) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(
                f"{where}: {keypath}: expected a table, got {_kind(value)}; "
                f'write it as a [reporter] section with type = "sqlite" etc.'
            )
            return
        for key, item in value.items():
            if key in _REPORTER_FIELDS:
                self.set_toml(_REPORTER_FIELDS[key], item, where, f"{keypath}.{key}", label)
            else:
                self.unknown(
                    where, f"{keypath}.{key}", key, list(_REPORTER_FIELDS), "in [reporter]"
                )

    def parse_targets(
        self, kind: str, value: Any, where: str, keypath: str
    ) -> List[TargetSettings]:
        """Check a ``[[background_task]]``/``[[function_trace]]`` array; bad entries are
        reported and left out."""
        if not isinstance(value, (list, tuple)):
            self.problems.append(
                f"{where}: {keypath}: expected an array of tables, got {_kind(value)}; "
                f"write each entry as [[{kind}]] (double brackets) with function = "
                '"module:object"'
            )
            return []
        prefix = f"{where}: {keypath}"
        plain = _plain_functions(value) if len(value) >= _BULK_CHECK_MIN else None
        if plain is not None:
            # _make: the positional fields straight to tuple.__new__, twice as fast here.
            make = TargetSettings._make
            return [
                make((kind, function, None, None, None, True, f"{prefix}[{index}]"))
                for index, function in enumerate(plain, start=1)
            ]
        found: List[TargetSettings] = []
        for index, entry in enumerate(value, start=1):
            # The common entry, a lone function = "module:name.path", is checked without
            # the full parser: the bootstrap parses every target in every process it
            # starts, and a table of thousands of targets must not cost it much.
            if type(entry) is dict and len(entry) == 1:
                function = entry.get("function")
                if type(function) is str and _is_plain_target(function):
                    found.append(TargetSettings(kind, function, source=f"{prefix}[{index}]"))
                    continue
            # Entries are counted from 1, as a reader counts the [[...]] headers.
            entry_path = f"{keypath}[{index}]"
            target = self.parse_target_entry(kind, entry, where, entry_path)
            if target is not None:
                found.append(target)
        return found

    def parse_target_entry(
        self, kind: str, entry: Any, where: str, entry_path: str
    ) -> Optional[TargetSettings]:
        from tasktrace.targets import parse_target

        if not isinstance(entry, Mapping):
            self.problems.append(
                f"{where}: {entry_path}: expected a table, got {_kind(entry)}; "
                f'write it as [[{kind}]] followed by function = "module:object"'
            )
            return None
        before = len(self.problems)
        allowed = _TARGET_KEYS[kind]
        options: Dict[str, Any] = {}
        for key, value in entry.items():
            keypath = f"{entry_path}.{key}"
            if key not in allowed:
                self.unknown(where, keypath, key, list(allowed), f"in [[{kind}]]")
            elif key == "enabled":
                if isinstance(value, bool):
                    options[key] = value
                else:
                    self.problems.append(
                        f"{where}: {keypath}: expected a boolean, got {_kind(value)}"
                        f"{_shown(value)}; write it like enabled = true"
                    )
            elif not isinstance(value, str) or not value.strip():
                got = "an empty string" if isinstance(value, str) else _kind(value) + _shown(value)
                example = "billing.jobs:send_invoices" if key == "function" else "..."
                self.problems.append(
                    f"{where}: {keypath}: expected a non-empty string, got {got}; "
                    f'write it like {key} = "{example}"'
                )
            elif key == "function":
                try:
                    options[key] = str(parse_target(value))
                except ConfigurationError as exc:
                    self.problems.append(f"{where}: {keypath}: {exc}")
            else:
                options[key] = value
        if "function" not in entry:
            self.problems.append(
                f"{where}: {entry_path}: missing the required key 'function'; "
                'add function = "module:object.path"'
            )
        if len(self.problems) > before:
            return None
        return TargetSettings(kind=kind, source=f"{where}: {entry_path}", **options)


#: From this many entries on, a target array is first checked in bulk (one regular
#: expression over all of them), which costs a compile but then far less per entry.
_BULK_CHECK_MIN = 64

#: Lines of ``module:object.path`` made of ASCII names only (see :func:`_is_plain_target`).
_PLAIN_LINES = (
    r"(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
    r":[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\n)*"
)


def _plain_functions(entries: Any) -> Optional[List[str]]:
    """The functions of ``entries`` if each is a lone plain ``function = "..."``, else None.

    One pass of a regular expression over all of them: a table of thousands of targets is
    checked in a few milliseconds (None sends every entry through the full checks).
    """
    try:
        functions = [
            entry["function"] for entry in entries if type(entry) is dict and len(entry) == 1
        ]
        if len(functions) != len(entries):
            return None
        block = "\n".join(functions) + "\n"
    except (KeyError, TypeError):
        return None
    # A function holding a newline would pass as two lines: count them.
    if block.count("\n") != len(functions) or re.fullmatch(_PLAIN_LINES, block) is None:
        return None
    return functions


def _is_plain_target(text: str) -> bool:
    """Whether ``text`` is ``module:object.path`` of ASCII names only, no globs, no spaces.

    Such a target is exactly what :func:`tasktrace.targets.parse_target` accepts and
    returns unchanged; anything else goes through it for its checks and messages.
    """
    if not text.isascii() or text.count(":") != 1:
        return False
    for part in text.replace(":", ".").split("."):  # noqa: SIM110 - faster than all()
        if not part.isidentifier():
            return False
    return True


def _read_variable(env: Mapping[str, str], names: Tuple[str, ...]) -> Optional[Tuple[str, str]]:
    """The first of ``names`` set to a non-blank value, as ``(name, text)``.

    A blank variable counts as unset, as the OpenTelemetry specification says, so
    ``TASKTRACE_APP_NAME=`` in a wrapper script does not override the file.
    """
    for name in names:
        text = env.get(name)
        if text is not None and text.strip():
            return name, text
    return None


_NO_ENV: Mapping[str, str] = MappingProxyType({})
_NO_OVERRIDES: Mapping[str, Any] = MappingProxyType({})


def _build(
    data: Mapping[str, Any],
    source: Optional[str],
    *,
    environment: Optional[str],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    key_prefix: str = "",
) -> Tuple[Settings, List[str]]:
    """Build settings from every layer; return them with the problems found.

    Invalid values are reported and skipped, so the settings returned hold the value of
    the next lower layer for every key that had a problem.
    """
    builder = _Builder()
    where = source if source is not None else "<no config file>"

    # Which [env.X] table and strictness: flag > argument > variable.
    env_name: Optional[str] = None
    env_origin = "default"
    if overrides.get("environment") is not None:
        env_name, env_origin = overrides["environment"], "--environment"
    elif environment is not None:
        env_name, env_origin = environment, "--environment"
    else:
        found = _read_variable(env, (_vars.TASKTRACE_ENVIRONMENT,))
        if found is not None:
            env_origin, env_name = found
    if env_name is not None and (not isinstance(env_name, str) or not env_name.strip()):
        builder.problems.append(
            f"{env_origin}: the environment name must be a non-empty string, got "
            f"{_kind(env_name)}; give the name of an [env.<name>] table"
        )
        env_name, env_origin = None, "default"
    elif env_name is not None:
        env_name = env_name.strip()

    strict = False
    strict_origin = "default"
    found = _read_variable(env, (_vars.TASKTRACE_STRICT,))
    if found is not None:
        try:
            strict, strict_origin = _vars.parse_bool(found[1]), found[0]
        except ValueError as exc:
            builder.problems.append(
                f"environment variable {found[0]}: {exc}; set it like {found[0]}=1"
            )
    if overrides.get("strict") is not None:
        value = overrides["strict"]
        try:
            strict = _vars.parse_bool(value) if isinstance(value, str) else _check_bool(value)
            strict_origin = "--strict"
        except (ValueError, _WrongType):
            builder.problems.append(
                f"command-line flag --strict: expected a boolean, got {_kind(value)}"
            )

    # Base table, then the selected [env.X] table; every [env.*] table is checked.
    if not isinstance(data, Mapping):
        builder.problems.append(
            f"{where}: expected a table of settings at the top, got {_kind(data)}"
        )
        data = {}
    builder.apply_table(data, where, key_prefix, where, in_env=False)
    env_tables: Dict[str, Mapping[Any, Any]] = {}
    raw_env = data.get("env", {})
    if not isinstance(raw_env, Mapping):
        builder.problems.append(
            f"{where}: {key_prefix}env: expected a table of [env.<name>] tables, got "
            f"{_kind(raw_env)}; write [env.production] and put settings under it"
        )
        raw_env = {}
    for name, table in raw_env.items():
        keypath = f"{key_prefix}env.{name}"
        if not isinstance(table, Mapping):
            builder.problems.append(
                f"{where}: {keypath}: expected a table, got {_kind(table)}; write it as "
                f"[env.{name}] followed by the settings to change"
            )
            continue
        env_tables[str(name)] = table
        if str(name) == env_name:
            builder.apply_table(table, where, f"{keypath}.", f"{where} [env.{name}]", in_env=True)
        else:
            # Checked but not applied: a typo in [env.production] is found in development.
            scratch = _Builder()
            scratch.apply_table(table, where, f"{keypath}.", where, in_env=True)
            builder.problems.extend(scratch.problems)
    if env_name is not None and source is not None and env_name not in env_tables:
        existing = ", ".join(repr(n) for n in env_tables) or "none (the file has no [env.*] tables)"
        builder.problems.append(
            f"{where}: [env.{env_name}] does not exist but {env_origin} selects it; "
            f"{_suggestion(env_name, list(env_tables))}add an [env.{env_name}] table or "
            f"choose one of the environments that exist: {existing}"
        )

    # Variables, then flags.
    for names, key, example in _VARIABLES:
        found = _read_variable(env, names)
        if found is not None:
            builder.set_text(_FIELDS[key], found[1], f"environment variable {found[0]}", example)
    for key, value in overrides.items():
        if key in ("environment", "strict") or value is None:
            continue
        field = _FIELDS.get(key)
        if field is None:
            builder.problems.append(
                f"command-line flag: unknown setting {key!r}; "
                f"{_suggestion(str(key), list(_FIELDS))}known settings: {', '.join(_FIELDS)}"
            )
            continue
        builder.set_flag(field, value, _flag_for(key))

    values = builder.values
    reporter = ReporterSettings(
        **{f.attribute: values[f.key] for f in _REPORTER_FIELDS.values()},
    )
    sources = dict(builder.sources)
    sources["environment"] = env_origin
    sources["strict"] = strict_origin
    settings = Settings(
        **{f.attribute: values[f.key] for f in _TOP_FIELDS.values()},
        reporter=reporter,
        background_tasks=tuple(builder.targets["background_task"]),
        function_traces=tuple(builder.targets["function_trace"]),
        environment=env_name,
        config_file=source,
        strict=strict,
        sources=MappingProxyType(sources),
    )
    return settings, builder.problems


def parse(
    data: Mapping[str, Any],
    source: str,
    *,
    environment: Optional[str] = None,
    env: Mapping[str, str] = _NO_ENV,
    overrides: Mapping[str, Any] = _NO_OVERRIDES,
) -> Settings:
    """Build ``Settings`` from parsed TOML data, variables and flags. Pure: no I/O.

    Precedence, highest first: ``overrides`` (command-line flags) > ``TASKTRACE_*``
    variables in ``env`` > the ``[env.<environment>]`` table > the base table > defaults.
    The environment is chosen by ``overrides["environment"]``, else ``environment``, else
    ``TASKTRACE_ENVIRONMENT``. Every ``[env.*]`` table is checked, the chosen one applied:
    its scalar keys and ``[env.X.reporter]`` keys replace the base ones, its
    ``[[background_task]]``/``[[function_trace]]`` entries are appended to the base lists.

    Args:
        data: the parsed TOML table (for ``pyproject.toml``, its ``[tool.tasktrace]``).
        source: the file it came from, used in messages, ``sources`` and ``config_file``.
        environment: the ``[env.<name>]`` table to apply (like ``--environment``).
        env: the environment variables to read (nothing is read from ``os.environ``).
        overrides: command-line flags by dotted key (``"app_name"``, ``"reporter.type"``,
            ``"environment"``, ``"strict"``); strings are parsed like variables; None
            values are ignored.

    Returns:
        The settings; ``sources`` maps every dotted key (plus ``environment`` and
        ``strict``) to ``"default"``, ``source``, ``"<source> [env.X]"``, a variable name
        or ``"--flag"``.

    Raises:
        ConfigurationError: with *every* problem found, each naming the file (or variable
            or flag), the key path (targets counted from 1, e.g.
            ``background_task[2].function``), what is wrong and the fix. Secret values
            (headers, URL passwords) never appear in messages.
    """
    return _parse_file_data(data, source, environment, env, overrides, key_prefix="")


def _parse_file_data(
    data: Mapping[str, Any],
    source: str,
    environment: Optional[str],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    key_prefix: str,
) -> Settings:
    settings, problems = _build(
        data,
        source,
        environment=environment,
        env=env,
        overrides=overrides,
        key_prefix=key_prefix,
    )
    if problems:
        raise ConfigurationError(problems)
    return settings


def settings_from_environment(env: Mapping[str, str], *, warn: bool = True) -> Settings:
    """Defaults plus ``TASKTRACE_*`` variables; no file is read. Never raises.

    Used at import time by ``tasktrace._state`` for programs that never call
    ``initialize()``. A bad variable does not fail the import: its setting keeps the
    default and (when ``warn``) one warning per problem is logged to the ``tasktrace``
    logger.
    """
    settings, problems = _build({}, None, environment=None, env=env, overrides=_NO_OVERRIDES)
    if problems and warn:
        import logging  # late: only when there is something to say

        logger = logging.getLogger("tasktrace")
        for problem in problems:
            logger.warning("tasktrace: %s (using the default)", problem)
    return settings


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------

_PYPROJECT_TABLE_RE = rb"(?m)^\s*\[\s*tool\s*\.\s*tasktrace\s*[\].]"


def _kind_of_file(path: str) -> str:
    return "pyproject.toml" if os.path.basename(path) == "pyproject.toml" else "tasktrace.toml"


def _pyproject_has_table(path: str) -> bool:
    """Whether ``path`` is a readable pyproject.toml with a ``[tool.tasktrace]`` table.

    A pyproject.toml that does not parse still counts when it visibly has the table, so
    ``load`` reports its syntax error instead of silently ignoring the configuration.
    """
    from tasktrace import _compat

    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError:
        return False
    if b"tasktrace" not in content:  # cheap: most pyproject.toml files never mention us
        return False
    try:
        data = _compat.load_toml(content.decode("utf-8"))
    except (UnicodeDecodeError, _compat.toml_decode_error()):
        return re.search(_PYPROJECT_TABLE_RE, content) is not None
    tool = data.get("tool")
    return isinstance(tool, Mapping) and "tasktrace" in tool


def _tidy(path: str) -> str:
    """``path`` written as ``str(pathlib.Path(path))`` writes it, without importing pathlib.

    Repeated separators and ``.`` parts go, and so does a trailing separator; ``..`` is
    kept (collapsing it could name another file when a symlink is involved).
    """
    drive, rest = os.path.splitdrive(path)
    if os.altsep:
        rest = rest.replace(os.altsep, os.sep)
    root = os.sep if rest.startswith(os.sep) else ""
    if root and rest.startswith(os.sep * 2) and not rest.startswith(os.sep * 3):
        root = os.sep * 2  # POSIX keeps exactly two leading slashes, and so does pathlib
    parts = [part for part in rest.split(os.sep) if part and part != "."]
    return drive + root + os.sep.join(parts) or "."


def _as_path(text: Union[str, os.PathLike[str]], cwd: Optional[str]) -> str:
    path = os.path.expanduser(os.fspath(text))
    if cwd is not None and not os.path.isabs(path):
        path = os.path.join(cwd, path)
    return _tidy(path)


def _find_config_file(
    explicit: Union[str, os.PathLike[str], None],
    env: Mapping[str, str],
    cwd: Optional[str],
) -> Optional[Tuple[str, str]]:
    """:func:`find_config_file` with the path as a ``str``.

    ``load`` uses this one: the bootstrap calls ``load`` in every process it starts, and
    ``pathlib`` (which imports ``urllib.parse`` and ``ipaddress``) costs milliseconds.
    """
    if explicit is not None and os.fspath(explicit) != "":
        path = _as_path(explicit, cwd)
        return path, _kind_of_file(path)
    found = _read_variable(env, (_vars.TASKTRACE_CONFIG_FILE,))
    if found is not None:
        path = _as_path(found[1].strip(), cwd)
        return path, _kind_of_file(path)
    directory = _tidy(cwd) if cwd is not None else os.getcwd()
    candidate = os.path.join(directory, "tasktrace.toml")
    if os.path.isfile(candidate):
        return candidate, "tasktrace.toml"
    candidate = os.path.join(directory, "pyproject.toml")
    if os.path.isfile(candidate) and _pyproject_has_table(candidate):
        return candidate, "pyproject.toml"
    return None


def find_config_file(
    explicit: Union[str, os.PathLike[str], None] = None,
    env: Mapping[str, str] = os.environ,
    cwd: Optional[str] = None,
) -> Optional[Tuple[Path, str]]:
    """Find the config file: ``explicit`` > ``TASKTRACE_CONFIG_FILE`` >
    ``./tasktrace.toml`` > ``./pyproject.toml`` (only if it has ``[tool.tasktrace]``).

    An explicit path or the variable is returned whether or not the file exists (``load``
    then reports it); the two discovered files only when they exist.

    Args:
        explicit: a path given on the command line or to ``initialize()``.
        env: the environment variables.
        cwd: the directory to search and to resolve relative paths against (default: the
            current directory).

    Returns:
        ``(path, kind)`` with kind ``"tasktrace.toml"`` or ``"pyproject.toml"`` (decided
        by the file's name), or None when there is no config file.
    """
    from pathlib import Path

    found = _find_config_file(explicit, env, cwd)
    return None if found is None else (Path(found[0]), found[1])


def load(
    path: Union[str, os.PathLike[str], None] = None,
    *,
    environment: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    overrides: Mapping[str, Any] = _NO_OVERRIDES,
    cwd: Optional[str] = None,
    origin: Optional[str] = None,
) -> Settings:
    """Find, read and parse the configuration; see :func:`find_config_file` and :func:`parse`.

    Args:
        path: an explicit config file (``--config``); it must exist.
        environment: the ``[env.<name>]`` table to apply (like ``--environment``).
        env: the environment variables (default ``os.environ``).
        overrides: command-line flags, as for :func:`parse`.
        cwd: where to look for ``tasktrace.toml``/``pyproject.toml`` (default: the
            current directory).
        origin: how ``path`` was named, for messages (default ``"--config"``), e.g.
            ``"the FILE argument"``.

    Returns:
        The settings. With no config file at all: defaults plus variables and flags.
        ``sources["config_file"]`` says how the file was found: ``"--config"``,
        ``"TASKTRACE_CONFIG_FILE"``, ``"discovered"`` or ``"default"`` (none).

    Raises:
        ConfigurationError: the file is missing (when named explicitly or by the variable)
            or unreadable, is not UTF-8, is not valid TOML (the message has the line and
            column), an explicit pyproject.toml has no ``[tool.tasktrace]`` table, or
            :func:`parse` finds problems.
    """
    variables: Mapping[str, str] = os.environ if env is None else env
    found = _find_config_file(path, variables, cwd)
    if path is not None and os.fspath(path) != "":
        how = "--config"
    elif found is not None and _read_variable(variables, (_vars.TASKTRACE_CONFIG_FILE,)):
        how = _vars.TASKTRACE_CONFIG_FILE
    else:
        how = "discovered"
    if found is None:
        settings, problems = _build(
            {}, None, environment=environment, env=variables, overrides=overrides
        )
        if problems:
            raise ConfigurationError(problems)
        return _with_source(settings, "config_file", "default")

    source, kind = found
    if how == "--config":
        named_by = "the --config option" if origin in (None, "--config") else origin
    elif how == _vars.TASKTRACE_CONFIG_FILE and _from_launcher(variables):
        named_by = "the --config option of tasktrace-admin run-program"
    else:
        named_by = how
    try:
        with open(source, "rb") as handle:
            content = handle.read()
    except FileNotFoundError:
        raise ConfigurationError(
            f"{source}: the config file does not exist (named by {named_by}); "
            "check the path, or run 'tasktrace-admin generate-config' to create one"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"{source}: cannot read the config file: {exc.strerror or exc}; "
            "check that it is a file and that this user may read it"
        ) from exc
    data = _read_toml(source, content, variables)

    key_prefix = ""
    if kind == "pyproject.toml":
        tool = data.get("tool")
        table = tool.get("tasktrace") if isinstance(tool, Mapping) else None
        if table is None:
            raise ConfigurationError(
                f"{source}: there is no [tool.tasktrace] table; add one, or point "
                "--config at a tasktrace.toml"
            )
        if not isinstance(table, Mapping):
            raise ConfigurationError(
                f"{source}: tool.tasktrace: expected a table, got {_kind(table)}; "
                "write it as a [tool.tasktrace] section"
            )
        data, key_prefix = dict(table), "tool.tasktrace."
    settings = _parse_file_data(data, source, environment, variables, overrides, key_prefix)
    return _with_source(settings, "config_file", how)


def _read_toml(source: str, content: bytes, env: Mapping[str, str]) -> Dict[str, Any]:
    """Decode and parse a config file's ``content``; a large one through the parse cache.

    Raises:
        ConfigurationError: not UTF-8, or not valid TOML (with line and column).
    """
    from tasktrace import _compat

    cached = len(content) >= _CACHE_MIN_SIZE
    if cached:
        # Late and only here: a small config never loads the cache module.
        from tasktrace import _config_cache

        data = _config_cache.read(source, content, env)
        if isinstance(data, dict):
            return data
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{source}: the file is not UTF-8 text (byte {exc.start}); save it as UTF-8, "
            "as TOML requires"
        ) from exc
    try:
        data = _compat.load_toml(text)
    except _compat.toml_decode_error() as exc:
        raise ConfigurationError(
            f"{source}: invalid TOML: {exc}; fix the syntax there (strings need quotes, "
            "tables are written [name], arrays of tables [[name]])"
        ) from exc
    if cached:
        from tasktrace import _config_cache

        _config_cache.write(source, content, data, env)
    return data


#: ``tasktrace._config_cache.MIN_SIZE``, here so that a small config need not import it.
_CACHE_MIN_SIZE = 32 * 1024

#: Set by ``tasktrace-admin run-program --config FILE`` to the path it puts in
#: ``TASKTRACE_CONFIG_FILE``, so a message about that file can say where it was named.
#: (A literal in ``tasktrace.admin.run`` too: the launcher imports nothing of this module.)
_LAUNCHER_CONFIG = "TASKTRACE_BOOTSTRAP_CONFIG"


def _from_launcher(env: Mapping[str, str]) -> bool:
    """Whether ``TASKTRACE_CONFIG_FILE`` holds what ``run-program --config`` put there."""
    marked = env.get(_LAUNCHER_CONFIG)
    return bool(marked) and marked == env.get(_vars.TASKTRACE_CONFIG_FILE)


def _with_source(settings: Settings, key: str, origin: str) -> Settings:
    sources = dict(settings.sources)
    sources[key] = origin
    return settings._replace(sources=MappingProxyType(sources))


# --------------------------------------------------------------------------------------
# Display
# --------------------------------------------------------------------------------------


def _display(value: Any) -> str:
    """A TOML-like rendering for show-config."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_display(v) for v in value) + "]"
    return repr(value)


def describe(settings: Settings) -> List[Tuple[str, str, str]]:
    """The effective settings for ``show-config``: ``(dotted key, value, source)`` rows.

    Values are rendered TOML-like; header values and URL credentials are redacted. After
    the settings come ``environment``, ``strict``, ``config_file`` and one row per target
    (``background_task[1]``, ...), whose source is the config entry it came from.
    """
    rows: List[Tuple[str, str, str]] = []
    sources = settings.sources
    for key, field in _FIELDS.items():
        owner: Any = settings.reporter if key.startswith("reporter.") else settings
        value = getattr(owner, field.attribute)
        if key == "reporter.headers":
            text = (
                "{" + ", ".join(f'"{name}" = "{_REDACTED}"' for name in value) + "}"
                if value
                else "{}"
            )
        elif key == "reporter.endpoint":
            text = _display(redact_url(value))
        else:
            text = _display(value)
        rows.append((key, text, sources.get(key, "default")))
    rows.append(
        ("environment", _display(settings.environment), sources.get("environment", "default"))
    )
    rows.append(("strict", _display(settings.strict), sources.get("strict", "default")))
    rows.append(
        ("config_file", _display(settings.config_file), sources.get("config_file", "default"))
    )
    for kind, targets in (
        ("background_task", settings.background_tasks),
        ("function_trace", settings.function_traces),
    ):
        for index, target in enumerate(targets, start=1):
            options = [
                f"{name}={getattr(target, name)!r}"
                for name in ("name", "group", "application")
                if getattr(target, name) is not None
            ]
            if not target.enabled:
                options.append("enabled=False")
            text = target.function + (f" ({', '.join(options)})" if options else "")
            rows.append((f"{kind}[{index}]", text, target.source or "default"))
    return rows


STARTER_CONFIG = """\
# tasktrace configuration.
#
# Run your program with:   tasktrace-admin run-program python job.py
# Check this file with:    tasktrace-admin validate-config
# See what is in effect:   tasktrace-admin show-config
#
# Precedence, highest first: command-line flags > TASKTRACE_* environment variables >
# the [env.<name>] table chosen by TASKTRACE_ENVIRONMENT > this file > defaults.

# The application every transaction is reported under.        (TASKTRACE_APP_NAME)
app_name = "my-worker"

# false: nothing is patched and nothing is recorded.            (TASKTRACE_ENABLED)
enabled = true

# critical, error, warning, info or debug.                      (TASKTRACE_LOG_LEVEL)
log_level = "warning"

# "stderr", "stdout" or a file path. tasktrace never writes to stdout by default.
log_file = "stderr"                                             # (TASKTRACE_LOG)

# Seconds between deliveries by the background thread.    (TASKTRACE_HARVEST_INTERVAL)
harvest_interval = 5.0

# The most seconds spent delivering at exit.              (TASKTRACE_SHUTDOWN_TIMEOUT)
shutdown_timeout = 2.5

# The most finished transactions held between deliveries (the oldest are dropped and
# counted beyond it), and the most function traces kept per transaction.
# buffer_size = 10000
# max_segments = 1000

# Record each task's thread CPU time (two system calls per task).     (TASKTRACE_CPU_TIME)
# cpu_time = false

[reporter]
# "sqlite" (default), "otlp", "console", "jsonl", a plugin name, or a list of them,
# e.g. ["sqlite", "otlp"].                                      (TASKTRACE_REPORTER)
type = "sqlite"

# The SQLite database (sqlite) or output file (jsonl). Default:
# $XDG_DATA_HOME/tasktrace/tasktrace.db or ~/.local/share/tasktrace/tasktrace.db.
# path = "~/.local/share/tasktrace/tasktrace.db"              # (TASKTRACE_DB)

# OTLP/HTTP collector; /v1/traces is appended. (TASKTRACE_OTLP_ENDPOINT, else
# OTEL_EXPORTER_OTLP_ENDPOINT)
# endpoint = "http://127.0.0.1:4318"

# Extra HTTP headers for the collector. They are secrets: tasktrace never prints them.
# Prefer the variable TASKTRACE_OTLP_HEADERS="api-key=..." to keep them out of files.
# headers = { "api-key" = "..." }

# Seconds one export may take, retries included; a CA bundle for TLS; "gzip" or "none".
# timeout = 10.0
# ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
# compression = "gzip"

# SQLite: most rows stored per task name and harvest (every error, then a random sample);
# counts, errors and totals stay exact whatever the sample. 0: store every row.
# max_rows_per_name = 1000

# Each [[background_task]] makes every call of a function a background-task transaction.
# function is "module:object.path"; each dotted segment after ':' may be a glob
# (*, ?, [abc]), e.g. "billing.jobs:Exporter.*". Use "__main__:main" for the script.
# Uncomment this example and point it at your own code, or let
# `tasktrace-admin generate-config --target MODULE:OBJECT` write the entries.
# [[background_task]]
# function = "my_app.jobs:run"
# name = "Run the job"          # default: "module:qualname" of the function
# group = "Task"                # default: "Function"
# application = "my-batch"      # default: app_name
# enabled = true

# Each [[function_trace]] records a segment inside the current transaction.
# [[function_trace]]
# function = "my_app.db:Client.query"
# name = "query"
# group = "Database"
# enabled = true

# Per-environment changes, applied when TASKTRACE_ENVIRONMENT=production. Any key above
# may appear here, including a [env.production.reporter] table; its [[background_task]]
# and [[function_trace]] entries are added to the ones above.
# [env.production]
# app_name = "my-worker-prod"
# [env.production.reporter]
# type = ["sqlite", "otlp"]
"""
