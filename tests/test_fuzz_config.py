"""Hostile configuration input: the TOML reader, the config parser and the target parser
only ever return settings/targets or raise ``ConfigurationError`` -- never another
exception -- whatever the text, the structure or the types they are given."""

from __future__ import annotations

import datetime
import math
import os
import tempfile
from typing import Any, Dict, Optional

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasktrace import _compat
from tasktrace.admin._describe import describe
from tasktrace.config import Settings, load, parse
from tasktrace.exceptions import ConfigurationError
from tasktrace.targets import Target, parse_target

_FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every key the schema knows, at every level, plus a few that look close to them: most
# random dicts then reach the real checks instead of stopping at "unknown key".
_KNOWN_KEYS = [
    "app_name",
    "enabled",
    "log_level",
    "log_file",
    "harvest_interval",
    "shutdown_timeout",
    "buffer_size",
    "max_segments",
    "reporter",
    "type",
    "path",
    "endpoint",
    "headers",
    "timeout",
    "ca_bundle",
    "compression",
    "background_task",
    "function_trace",
    "function",
    "name",
    "group",
    "application",
    "enabled",
    "env",
    "production",
    "strict",
    "tool",
    "tasktrace",
    "app-name",
    "Reporter",
    "",
]
_keys = st.one_of(st.sampled_from(_KNOWN_KEYS), st.text(max_size=20))

# Every type a TOML document can produce (tomllib gives datetimes, dates and times too),
# with extremes: huge integers, NaN and infinities, control characters, long strings.
_scalars = st.one_of(
    st.none(),  # not a TOML value, but a caller handing parse() a dict may include it
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=5),
    st.sampled_from(
        [
            "a:b",
            "m.n:C.*",
            "m:[",
            "m:a..b",
            ":",
            "sqlite",
            "otlp,sqlite",
            "gzip",
            "debug",
            "http://u:p@h:1/?token=t",
            "https://[::1",
            "ftp://x",
            "x" * 5000,
            "1e400",
            "-0",
            "\x00",
            "\ud800",
        ]
    ),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()) if hasattr(st, "timezones") else st.datetimes(),
    st.dates(),
    st.times(),
    st.binary(max_size=8),  # not TOML either: must still be a clean error
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(_keys, children, max_size=6),
    ),
    max_leaves=12,
)
_config_dicts = st.dictionaries(_keys, _values, max_size=8)

# The shape of a real config with random leaves: reaches the deepest checks every time.
_shaped = st.fixed_dictionaries(
    {},
    optional={
        "app_name": _values,
        "enabled": _values,
        "harvest_interval": _values,
        "shutdown_timeout": _values,
        "buffer_size": _values,
        "reporter": st.dictionaries(
            st.sampled_from(["type", "path", "endpoint", "headers", "timeout", "compression"]),
            _values,
            max_size=6,
        ),
        "background_task": st.lists(
            st.dictionaries(
                st.sampled_from(["function", "name", "group", "application", "enabled"]),
                _values,
                max_size=5,
            ),
            max_size=3,
        ),
        "function_trace": _values,
        "env": st.dictionaries(_keys, _config_dicts, max_size=3),
    },
)

_env_names = st.sampled_from(
    [
        "TASKTRACE_APP_NAME",
        "TASKTRACE_ENABLED",
        "TASKTRACE_LOG_LEVEL",
        "TASKTRACE_LOG",
        "TASKTRACE_HARVEST_INTERVAL",
        "TASKTRACE_SHUTDOWN_TIMEOUT",
        "TASKTRACE_REPORTER",
        "TASKTRACE_DB",
        "TASKTRACE_OTLP_ENDPOINT",
        "TASKTRACE_OTLP_HEADERS",
        "TASKTRACE_ENVIRONMENT",
        "TASKTRACE_STRICT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
)
_env = st.dictionaries(_env_names, st.text(max_size=30), max_size=5)


def _check_parse(data: Any, env: Optional[Dict[str, str]] = None) -> None:
    try:
        result = parse(data, "fuzz.toml", env=env or {})
    except ConfigurationError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        str(exc)
    else:
        assert isinstance(result, Settings)
        repr(result)
        describe(result)


@_FAST
@given(data=_config_dicts, env=_env)
@example(data={"harvest_interval": math.nan}, env={})
@example(data={"buffer_size": 10**400}, env={})
@example(data={"reporter": {"headers": {"k": datetime.time(1, 2)}}}, env={})
@example(data={"background_task": [{"function": b"m:f"}]}, env={})
@example(data={}, env={"TASKTRACE_HARVEST_INTERVAL": "1e400"})
@example(data={}, env={"TASKTRACE_OTLP_HEADERS": "=,=,\x00=\ud800"})
def test_parse_arbitrary_nested_data(data: Dict[str, Any], env: Dict[str, str]) -> None:
    """parse() on arbitrary nested dicts/lists/scalars: Settings or ConfigurationError."""
    _check_parse(data, env)


@_FAST
@given(data=_shaped, env=_env)
def test_parse_config_shaped_data(data: Dict[str, Any], env: Dict[str, str]) -> None:
    """parse() on config-shaped data with hostile leaves: Settings or ConfigurationError."""
    _check_parse(data, env)


@_FAST
@given(data=_values)
def test_parse_non_mapping_top_level(data: Any) -> None:
    """parse() handed a list, a string or a number instead of a table fails cleanly."""
    _check_parse(data)


_VALID_CONFIG = """\
app_name = "billing-worker"
harvest_interval = 5.0
[reporter]
type = ["sqlite", "otlp"]
endpoint = "http://127.0.0.1:4318"
headers = { "api-key" = "x" }
[[background_task]]
function = "billing.jobs:send_invoices"
group = "Task"
[env.production]
app_name = "prod"
"""


@st.composite
def _mutated_config(draw: st.DrawFn) -> str:
    """The valid config above with random slices replaced, inserted or deleted."""
    text = _VALID_CONFIG
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 12)))
        text = text[:start] + draw(st.text(max_size=6)) + text[end:]
    return text


def _check_toml_then_parse(text: str) -> None:
    try:
        data = _compat.load_toml(text)
    except _compat.toml_decode_error():
        return  # a syntax error, which load() turns into ConfigurationError (tested below)
    _check_parse(data)


@_FAST
@given(text=st.text())
def test_load_toml_of_arbitrary_text_then_parse(text: str) -> None:
    """Arbitrary text: load_toml raises only its decode error; parse() then behaves."""
    _check_toml_then_parse(text)


@_FAST
@given(text=_mutated_config())
def test_load_toml_of_mutated_config_then_parse(text: str) -> None:
    """A valid config with random damage: a decode error, Settings or ConfigurationError."""
    _check_toml_then_parse(text)


@settings(max_examples=100, deadline=None)
@given(content=st.one_of(st.binary(max_size=200), _mutated_config().map(str.encode)))
def test_load_of_arbitrary_file_bytes(content: bytes) -> None:
    """load() of any file content: Settings or ConfigurationError (never a decode error)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tasktrace.toml")
        with open(path, "wb") as handle:
            handle.write(content)
        try:
            result = load(path, env={})
        except ConfigurationError as exc:
            assert exc.problems
        else:
            assert isinstance(result, Settings)


_target_chars = st.sampled_from(list("ab_Z09.:*?[]!-^ \t\n\\/é$\x00"))


@_FAST
@given(
    text=st.one_of(
        st.text(),
        st.text(alphabet=_target_chars, max_size=30),
        st.builds(
            lambda m, o: f"{m}:{o}",
            st.text(alphabet=_target_chars, max_size=12),
            st.text(alphabet=_target_chars, max_size=12),
        ),
    )
)
@example(text="m:[")
@example(text="m:[]]")
@example(text="m:[!]")
@example(text="m:a[b-")
@example(text="a" * 100_000 + ":f")
def test_parse_target_arbitrary_text(text: str) -> None:
    """parse_target on any text: a Target or ConfigurationError."""
    try:
        target = parse_target(text)
    except ConfigurationError as exc:
        assert str(exc)
    else:
        assert isinstance(target, Target)
        assert target.module and target.segments
        assert parse_target(f"{target.module}:{target.object_path}") == target


@_FAST
@given(value=_values)
def test_parse_target_non_strings(value: Any) -> None:
    """parse_target on a non-string (as a broken config may hand it): ConfigurationError."""
    if isinstance(value, str):
        return
    try:
        parse_target(value)
    except ConfigurationError:
        pass
    else:
        raise AssertionError(f"{value!r} was accepted as a target")
