"""Tests for tasktrace.config: parse (pure), load (files), precedence, errors, secrets."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from tasktrace import config
from tasktrace._compat import load_toml
from tasktrace.admin._describe import STARTER_CONFIG, describe
from tasktrace.config import (
    ConfigurationError,
    ReporterSettings,
    Settings,
    find_config_file,
    load,
    parse,
    redact_url,
    redacted_headers,
    settings_from_environment,
)

SPEC_EXAMPLE = """
app_name = "billing-worker"
enabled = true
log_level = "warning"
log_file = "stderr"
harvest_interval = 5.0
shutdown_timeout = 2.5

[reporter]
type = "sqlite"
path = "~/.local/share/tasktrace/tasktrace.db"
endpoint = "http://127.0.0.1:4318"
headers = { "api-key" = "HEADER-SECRET-VALUE" }

[[background_task]]
function = "billing.jobs:send_invoices"
name = "Send invoices"
group = "Task"
application = "billing-batch"
enabled = true

[[function_trace]]
function = "billing.db:Client.query"

[env.production]
app_name = "billing-worker-prod"
[env.production.reporter]
type = ["sqlite", "otlp"]
"""


def _problems(data: Dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigurationError) as info:
        parse(data, "conf/tasktrace.toml", **kwargs)
    return list(info.value.problems)


def _one_problem(data: Dict[str, Any], **kwargs: Any) -> str:
    problems = _problems(data, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


# ---------------------------------------------------------------------------- parse


def test_defaults_from_empty_table() -> None:
    """An empty table gives the dataclass defaults, every source "default"."""
    settings = parse({}, "t.toml")
    assert settings.app_name == config.DEFAULT_APP_NAME
    assert settings.reporter == ReporterSettings()
    assert settings.config_file == "t.toml"
    assert settings.environment is None and settings.strict is False
    assert set(settings.sources.values()) == {"default"}
    assert "reporter.headers" in settings.sources and "app_name" in settings.sources


def test_spec_example_parses() -> None:
    """Every key of the SPEC section 3 example is accepted with the right values."""
    settings = parse(load_toml(SPEC_EXAMPLE), "tasktrace.toml")
    assert settings.app_name == "billing-worker"
    assert settings.harvest_interval == 5.0 and settings.shutdown_timeout == 2.5
    assert settings.reporter.types == ("sqlite",)
    assert settings.reporter.headers == {"api-key": "HEADER-SECRET-VALUE"}
    (task,) = settings.background_tasks
    assert (task.kind, task.function, task.name, task.group, task.application) == (
        "background_task",
        "billing.jobs:send_invoices",
        "Send invoices",
        "Task",
        "billing-batch",
    )
    assert task.source == "tasktrace.toml: background_task[1]"
    (trace,) = settings.function_traces
    assert trace.kind == "function_trace" and trace.object_path == "Client.query"


def test_all_optional_keys_parse() -> None:
    """buffer_size, max_segments, timeout, ca_bundle and compression are accepted."""
    settings = parse(
        {
            "buffer_size": 50,
            "max_segments": 0,
            "reporter": {"timeout": 3, "ca_bundle": "ca.pem", "compression": "NONE"},
        },
        "t.toml",
    )
    assert settings.buffer_size == 50 and settings.max_segments == 0
    assert settings.reporter.timeout == 3.0 and isinstance(settings.reporter.timeout, float)
    assert settings.reporter.ca_bundle == "ca.pem"
    assert settings.reporter.compression == "none"


def test_starter_config_parses() -> None:
    """STARTER_CONFIG is valid TOML that parse accepts."""
    settings = parse(load_toml(STARTER_CONFIG), "tasktrace.toml")
    # Its example target is a comment: a module that does not exist would fail validate-config.
    assert settings.background_tasks == ()
    for key in ("harvest_interval", "shutdown_timeout", "buffer_size", "endpoint", "headers"):
        assert key in STARTER_CONFIG
    for table in ("[reporter]", "[[background_task]]", "[[function_trace]]", "[env.production]"):
        assert table in STARTER_CONFIG


def test_starter_config_uncommented_still_parses() -> None:
    """Uncommenting the optional example lines in STARTER_CONFIG keeps it valid."""
    lines = []
    for line in STARTER_CONFIG.splitlines():
        stripped = line.lstrip("# ")
        is_setting = (" = " in stripped or stripped.startswith("[")) and line.startswith("# ")
        lines.append(stripped if is_setting and not stripped.startswith("[tool") else line)
    data = load_toml("\n".join(lines))
    settings = parse(data, "t.toml", environment="production")
    assert settings.app_name == "my-worker-prod"
    assert settings.reporter.types == ("sqlite", "otlp")
    assert [t.function for t in settings.background_tasks] == ["my_app.jobs:run"]
    assert [t.function for t in settings.function_traces] == ["my_app.db:Client.query"]


# ------------------------------------------------------------------------ precedence


PRECEDENCE_FILE = {
    "app_name": "from-file",
    "log_level": "error",
    "harvest_interval": 7,
    "shutdown_timeout": 1,
    "reporter": {"path": "file.db", "type": "sqlite"},
    "env": {
        "prod": {"app_name": "from-env-table", "log_level": "info", "reporter": {"type": "otlp"}}
    },
}


def test_precedence_flag_variable_env_table_file_default() -> None:
    """flag > TASKTRACE_* variable > [env.X] > base file > default, each with its source."""
    settings = parse(
        PRECEDENCE_FILE,
        "t.toml",
        env={
            "TASKTRACE_ENVIRONMENT": "prod",
            "TASKTRACE_APP_NAME": "from-variable",
            "TASKTRACE_LOG_LEVEL": "debug",
        },
        overrides={"app_name": "from-flag"},
    )
    assert (settings.app_name, settings.sources["app_name"]) == ("from-flag", "--app-name")
    assert (settings.log_level, settings.sources["log_level"]) == ("debug", "TASKTRACE_LOG_LEVEL")
    assert settings.reporter.types == ("otlp",)
    assert settings.sources["reporter.type"] == "t.toml [env.prod]"
    assert (settings.reporter.path, settings.sources["reporter.path"]) == ("file.db", "t.toml")
    assert settings.harvest_interval == 7.0 and settings.sources["harvest_interval"] == "t.toml"
    assert settings.buffer_size == 10_000 and settings.sources["buffer_size"] == "default"
    assert settings.environment == "prod"
    assert settings.sources["environment"] == "TASKTRACE_ENVIRONMENT"


def test_environment_choice_precedence() -> None:
    """The env table is chosen by the flag, then the argument, then the variable."""
    data = {"env": {"a": {"app_name": "A"}, "b": {"app_name": "B"}, "c": {"app_name": "C"}}}
    env = {"TASKTRACE_ENVIRONMENT": "a"}
    assert parse(data, "t", env=env).app_name == "A"
    assert parse(data, "t", env=env, environment="b").app_name == "B"
    chosen = parse(data, "t", env=env, environment="b", overrides={"environment": "c"})
    assert chosen.app_name == "C" and chosen.sources["environment"] == "--environment"


def test_env_table_targets_are_appended() -> None:
    """[[background_task]] entries in the chosen [env.X] table add to the base list."""
    data = {
        "background_task": [{"function": "a:f"}],
        "env": {"prod": {"background_task": [{"function": "b:g"}]}},
    }
    assert [t.function for t in parse(data, "t").background_tasks] == ["a:f"]
    settings = parse(data, "t", environment="prod")
    assert [t.function for t in settings.background_tasks] == ["a:f", "b:g"]
    assert settings.background_tasks[1].source == "t: env.prod.background_task[1]"


def test_variables_cover_every_documented_name() -> None:
    """Each TASKTRACE_* variable sets its key and is named as the source."""
    env = {
        "TASKTRACE_APP_NAME": "app",
        "TASKTRACE_ENABLED": "false",
        "TASKTRACE_LOG_LEVEL": "INFO",
        "TASKTRACE_LOG": "/tmp/tt.log",
        "TASKTRACE_SHUTDOWN_TIMEOUT": "9",
        "TASKTRACE_HARVEST_INTERVAL": "0.5",
        "TASKTRACE_REPORTER": "sqlite, otlp",
        "TASKTRACE_DB": "/tmp/tt.db",
        "TASKTRACE_OTLP_ENDPOINT": "https://collector:4318",
        "TASKTRACE_OTLP_HEADERS": "api-key=s%3Dx",
        "TASKTRACE_STRICT": "1",
    }
    settings = parse({}, "t", env=env)
    assert settings.app_name == "app" and settings.enabled is False
    assert settings.log_level == "info" and settings.log_file == "/tmp/tt.log"
    assert settings.shutdown_timeout == 9.0 and settings.harvest_interval == 0.5
    assert settings.reporter.types == ("sqlite", "otlp")
    assert settings.reporter.path == "/tmp/tt.db"
    assert settings.reporter.endpoint == "https://collector:4318"
    assert dict(settings.reporter.headers) == {"api-key": "s=x"}
    assert settings.strict is True and settings.sources["strict"] == "TASKTRACE_STRICT"
    assert settings.sources["reporter.headers"] == "TASKTRACE_OTLP_HEADERS"
    assert settings.sources["log_file"] == "TASKTRACE_LOG"


def test_otel_endpoint_is_the_fallback() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT is used only when TASKTRACE_OTLP_ENDPOINT is unset."""
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}
    settings = parse({}, "t", env=otel)
    assert settings.reporter.endpoint == "http://otel:4318"
    assert settings.sources["reporter.endpoint"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
    both = {**otel, "TASKTRACE_OTLP_ENDPOINT": "http://mine:4318"}
    assert parse({}, "t", env=both).reporter.endpoint == "http://mine:4318"


def test_blank_variable_counts_as_unset() -> None:
    """An empty or blank variable does not override the file."""
    settings = parse({"app_name": "file"}, "t", env={"TASKTRACE_APP_NAME": "  "})
    assert settings.app_name == "file"


def test_flags_accept_strings_and_values() -> None:
    """String flag values are parsed like variables; None flags are ignored."""
    settings = parse(
        {},
        "t",
        overrides={
            "enabled": "no",
            "reporter.type": "console",
            "harvest_interval": 2,
            "log_file": None,
        },
    )
    assert settings.enabled is False and settings.reporter.types == ("console",)
    assert settings.harvest_interval == 2.0
    assert settings.sources["reporter.type"] == "--reporter-type"
    assert settings.sources["log_file"] == "default"


def test_unknown_flag_is_reported() -> None:
    """An override for a key that does not exist is a problem with a suggestion."""
    message = _one_problem({}, overrides={"app_nam": "x"})
    assert "unknown setting 'app_nam'" in message and "did you mean 'app_name'" in message


# ---------------------------------------------------------------------------- errors


def test_unknown_key_did_you_mean() -> None:
    """An unknown key names file and key, suggests the closest one and says the fix."""
    message = _one_problem({"harvest_intervall": 5})
    assert message.startswith("conf/tasktrace.toml: harvest_intervall: unknown key")
    assert "did you mean 'harvest_interval'?" in message
    assert "remove it or fix its spelling" in message


def test_unknown_keys_in_every_table() -> None:
    """Unknown keys are found in [reporter], target entries and [env.X] tables."""
    problems = _problems(
        {
            "reporter": {"typ": "sqlite"},
            "background_task": [{"function": "a:f", "nmae": "x"}],
            "function_trace": [{"function": "a:g", "application": "x"}],
            "env": {"dev": {"log_levl": "info", "env": {}}},
        }
    )
    assert len(problems) == 5
    assert "reporter.typ" in problems[0] and "did you mean 'type'" in problems[0]
    assert "background_task[1].nmae" in problems[1] and "'name'" in problems[1]
    assert "function_trace[1].application" in problems[2]
    assert "env.dev.log_levl" in problems[3] and "'log_level'" in problems[3]
    assert "env.dev.env" in problems[4] and "cannot be nested" in problems[4]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"harvest_interval": True},
            "harvest_interval: expected a number of seconds, got a boolean",
        ),
        ({"buffer_size": True}, "buffer_size: expected an integer, got a boolean"),
        ({"enabled": 1}, "enabled: expected a boolean, got an integer (1)"),
        ({"app_name": 3}, "app_name: expected a string, got an integer"),
        (
            {"shutdown_timeout": "5"},
            "shutdown_timeout: expected a number of seconds, got a string ('5')",
        ),
        ({"reporter": "sqlite"}, "reporter: expected a table, got a string"),
        ({"reporter": {"type": 3}}, "reporter.type: expected a reporter name or a list of names"),
        (
            {"reporter": {"type": ["sqlite", 2]}},
            "reporter.type: expected a reporter name or a list",
        ),
        ({"background_task": {"function": "a:f"}}, "write each entry as [[background_task]]"),
        ({"background_task": ["a:f"]}, "background_task[1]: expected a table, got a string"),
        (
            {"background_task": [{"function": "a:f", "enabled": "yes"}]},
            "enabled: expected a boolean",
        ),
        (
            {"background_task": [{"function": "a:f", "name": 4}]},
            "name: expected a non-empty string",
        ),
    ],
)
def test_wrong_types(data: Dict[str, Any], fragment: str) -> None:
    """A wrong type says expected versus got (bools are not numbers) and how to write it."""
    message = _one_problem(data)
    assert message.startswith("conf/tasktrace.toml: ")
    assert fragment in message


def test_wrong_type_shows_the_fix() -> None:
    """A wrong-type message ends with an example of the right form."""
    message = _one_problem({"harvest_interval": "5"})
    assert message.endswith("write it like harvest_interval = 5.0")


@pytest.mark.parametrize(
    ("function", "fragment"),
    [
        ("billing.jobs", "no ':'"),
        (":send", "empty module part"),
        ("billing.jobs:", "empty object path"),
        ("billing-jobs:send", "invalid module name"),
        ("billing.jobs:send[", "bad glob"),
        ("", "expected a non-empty string, got an empty string"),
    ],
)
def test_bad_function(function: str, fragment: str) -> None:
    """A bad function names its entry (counted from 1) and says how to write one."""
    data = {"background_task": [{"function": "ok:fine"}, {"function": function}]}
    message = _one_problem(data)
    assert message.startswith("conf/tasktrace.toml: background_task[2].function: ")
    assert fragment in message


def test_missing_function() -> None:
    """A target entry without function says it is required."""
    message = _one_problem({"function_trace": [{"name": "x"}]})
    assert "function_trace[1]: missing the required key 'function'" in message


@pytest.mark.parametrize(
    "data",
    [
        {"harvest_interval": 0},
        {"harvest_interval": -1.5},
        {"shutdown_timeout": 0},
        {"reporter": {"timeout": -3}},
        {"harvest_interval": math.inf},
        {"shutdown_timeout": math.nan},
    ],
)
def test_non_positive_intervals_and_timeouts(data: Dict[str, Any]) -> None:
    """Intervals and timeouts must be positive, finite numbers."""
    message = _one_problem(data)
    assert "must be a positive number of seconds" in message
    assert "use a number greater than 0" in message


def test_bad_counts() -> None:
    """buffer_size must be at least 1, max_segments at least 0."""
    problems = _problems({"buffer_size": 0, "max_segments": -1})
    assert "buffer_size: must be at least 1" in problems[0]
    assert "max_segments: must be at least 0" in problems[1]


def test_unknown_log_level_and_compression() -> None:
    """log_level and compression must be known words; near misses get a suggestion."""
    problems = _problems({"log_level": "verbose", "reporter": {"compression": "zip"}})
    assert "log_level: 'verbose' is not one of critical, error, warning, info, debug" in problems[0]
    assert "reporter.compression: 'zip' is not one of gzip, none" in problems[1]
    assert "did you mean 'gzip'?" in problems[1]


def test_bad_reporter_values() -> None:
    """An empty or repeated reporter list, a bad endpoint and bad headers are reported."""
    problems = _problems(
        {
            "reporter": {
                "type": [],
                "endpoint": "ftp://host",
                "headers": {"bad name": "v", "ok": 5},
            },
            "env": {"a": {"reporter": {"type": ["otlp", "otlp"]}}},
        }
    )
    assert "reporter.type: is an empty list" in problems[0]
    assert "reporter.endpoint: 'ftp://host' is not an http:// or https:// URL" in problems[1]
    assert "'bad name' is not a valid HTTP header name" in problems[2]
    assert "lists 'otlp' twice" in problems[3]


def test_missing_env_table_lists_existing() -> None:
    """Selecting an [env.X] that does not exist names it, its origin and what exists."""
    message = _one_problem(
        {"env": {"production": {}, "staging": {}}}, env={"TASKTRACE_ENVIRONMENT": "prodution"}
    )
    assert "[env.prodution] does not exist but TASKTRACE_ENVIRONMENT selects it" in message
    assert "'production', 'staging'" in message
    assert "did you mean 'production'?" in message


def test_bad_variables_name_the_variable() -> None:
    """Bad variable values are reported with the variable's name and an example."""
    problems = _problems(
        {},
        env={
            "TASKTRACE_ENABLED": "maybe",
            "TASKTRACE_SHUTDOWN_TIMEOUT": "abc",
            "TASKTRACE_HARVEST_INTERVAL": "-1",
            "TASKTRACE_STRICT": "sure",
        },
    )
    joined = "\n".join(problems)
    assert "environment variable TASKTRACE_ENABLED: expected true or false" in joined
    assert "'maybe'" in joined and "set it like TASKTRACE_ENABLED=true" in joined
    assert "environment variable TASKTRACE_SHUTDOWN_TIMEOUT: expected a number" in joined
    assert "environment variable TASKTRACE_HARVEST_INTERVAL: must be a positive" in joined
    assert "environment variable TASKTRACE_STRICT" in joined
    assert len(problems) == 4


def test_all_problems_are_collected() -> None:
    """Every problem in file, env tables and variables is reported in one error."""
    data = {
        "app_name": 3,
        "harvest_intervall": 5,
        "shutdown_timeout": -1,
        "log_level": "loud",
        "reporter": {"type": 3, "compression": "zip"},
        "background_task": [{"function": "nocolon"}, {"function": "a:b["}],
        "env": {"prod": {"bogus": 1}},
    }
    problems = _problems(data, env={"TASKTRACE_ENABLED": "maybe"})
    assert len(problems) == 10
    assert all(p.startswith(("conf/tasktrace.toml: ", "environment variable ")) for p in problems)
    with pytest.raises(ConfigurationError) as info:
        parse(data, "conf/tasktrace.toml", env={"TASKTRACE_ENABLED": "maybe"})
    assert str(info.value).count("\n") == 9


# --------------------------------------------------------------------------- secrets


SECRET_DATA = {
    "reporter": {
        "headers": {"api-key": "HEADER-SECRET"},
        "endpoint": "https://user:URL-PASSWORD@collector:4318/v1?token=QUERY-SECRET&region=eu",
    }
}


def test_repr_redacts_secrets() -> None:
    """str()/repr() of Settings and of the headers never show header values or passwords."""
    settings = parse(SECRET_DATA, "t")
    for text in (str(settings), repr(settings.reporter), repr(settings.reporter.headers)):
        assert "HEADER-SECRET" not in text
        assert "URL-PASSWORD" not in text
        assert "QUERY-SECRET" not in text
    assert "api-key" in str(settings) and "region=eu" in str(settings)
    assert settings.reporter.headers["api-key"] == "HEADER-SECRET"  # the value is still there


def test_repr_redacts_headers_given_directly() -> None:
    """ReporterSettings built by hand also redact header values in repr()."""
    reporter = ReporterSettings(headers={"authorization": "Bearer HAND-SECRET"})
    assert "HAND-SECRET" not in repr(reporter) and "HAND-SECRET" not in repr(
        Settings(reporter=reporter)
    )


def test_describe_redacts_secrets() -> None:
    """describe() rows carry key, display value and source, with secrets redacted."""
    settings = parse(SECRET_DATA, "t", overrides={"app_name": "x"})
    rows = describe(settings)
    text = repr(rows)
    assert "HEADER-SECRET" not in text and "URL-PASSWORD" not in text
    assert "QUERY-SECRET" not in text
    by_key = {key: (value, source) for key, value, source in rows}
    assert by_key["app_name"] == ('"x"', "--app-name")
    assert by_key["reporter.headers"] == ('{"api-key" = "***"}', "t")
    assert by_key["reporter.path"] == ("(not set)", "default")
    assert {"environment", "strict", "config_file"} <= set(by_key)


def test_describe_lists_targets() -> None:
    """describe() has one row per target with its options and config entry."""
    rows = describe(parse(load_toml(SPEC_EXAMPLE), "tasktrace.toml"))
    by_key = {key: (value, source) for key, value, source in rows}
    value, source = by_key["background_task[1]"]
    assert value.startswith("billing.jobs:send_invoices (name='Send invoices'")
    assert source == "tasktrace.toml: background_task[1]"
    assert by_key["function_trace[1]"][0] == "billing.db:Client.query"


def test_errors_never_show_secrets() -> None:
    """Problems about headers and endpoints never include the secret values."""
    problems = _problems(
        {
            "reporter": {
                "headers": {"api-key": 12345678, "x": "LINE\nBREAK-SECRET"},
                "endpoint": "ftp://user:URL-PASSWORD@host",
            },
            "env": {"a": {"reporter": {"headers": "TABLE-SECRET"}}},
        },
        env={"TASKTRACE_OTLP_HEADERS": "VARIABLE-SECRET"},
    )
    text = "\n".join(problems)
    for secret in ("12345678", "BREAK-SECRET", "URL-PASSWORD", "TABLE-SECRET", "VARIABLE-SECRET"):
        assert secret not in text
    assert len(problems) == 4


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host:4318/x", "https://***@host:4318/x"),
        ("https://user:secret/v1", "https://user:***/v1"),
        ("https://TOKEN@host/x", "https://***@host/x"),
        ("http://host/v1?api_key=k&region=eu", "http://host/v1?api_key=***&region=eu"),
        ("http://host/v1?Signature=s&secret=1&x=2", "http://host/v1?Signature=***&secret=***&x=2"),
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318"),
        ("http://[::1", "<unparsable URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """redact_url hides userinfo and credential-like query values, keeps the rest."""
    assert redact_url(url) == expected


def test_redacted_headers() -> None:
    """redacted_headers keeps names and replaces every value."""
    assert redacted_headers({"a": "1", "B": "2"}) == {"a": "***", "B": "***"}


# ----------------------------------------------------------------- environment only


def test_settings_from_environment_warns_and_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    """Bad variables do not raise: their keys keep the default, one warning each."""
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        settings = settings_from_environment(
            {
                "TASKTRACE_ENABLED": "maybe",
                "TASKTRACE_SHUTDOWN_TIMEOUT": "abc",
                "TASKTRACE_APP_NAME": "good",
                "TASKTRACE_ENVIRONMENT": "prod",
            }
        )
    assert settings.enabled is True and settings.shutdown_timeout == 2.5
    assert settings.app_name == "good" and settings.config_file is None
    assert settings.environment == "prod"  # no file: nothing to check it against
    messages = [r.getMessage() for r in caplog.records if r.name == "tasktrace"]
    assert len(messages) == 2
    assert "TASKTRACE_ENABLED" in messages[0] and "TASKTRACE_SHUTDOWN_TIMEOUT" in messages[1]


def test_settings_from_environment_reads_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settings_from_environment ignores tasktrace.toml and TASKTRACE_CONFIG_FILE."""
    (tmp_path / "tasktrace.toml").write_text('app_name = "file"\n')
    monkeypatch.chdir(tmp_path)
    settings = settings_from_environment(
        {"TASKTRACE_CONFIG_FILE": str(tmp_path / "tasktrace.toml")}
    )
    assert settings.app_name == config.DEFAULT_APP_NAME


# ----------------------------------------------------------------------------- load


def test_load_explicit_path(tmp_path: Path) -> None:
    """An explicit path is read and named as config_file with source --config."""
    path = tmp_path / "custom.toml"
    path.write_text(SPEC_EXAMPLE)
    settings = load(path, env={})
    assert settings.app_name == "billing-worker"
    assert settings.config_file == str(path)
    assert settings.sources["config_file"] == "--config"
    assert settings.sources["app_name"] == str(path)


def test_load_variable_beats_discovery(tmp_path: Path) -> None:
    """TASKTRACE_CONFIG_FILE wins over ./tasktrace.toml; an explicit path wins over both."""
    (tmp_path / "tasktrace.toml").write_text('app_name = "local"\n')
    other = tmp_path / "other.toml"
    other.write_text('app_name = "variable"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('app_name = "explicit"\n')
    env = {"TASKTRACE_CONFIG_FILE": str(other)}
    assert load(env={}, cwd=str(tmp_path)).app_name == "local"
    from_variable = load(env=env, cwd=str(tmp_path))
    assert from_variable.app_name == "variable"
    assert from_variable.sources["config_file"] == "TASKTRACE_CONFIG_FILE"
    assert load(explicit, env=env, cwd=str(tmp_path)).app_name == "explicit"


def test_load_discovers_tasktrace_toml_before_pyproject(tmp_path: Path) -> None:
    """./tasktrace.toml is preferred to [tool.tasktrace] in ./pyproject.toml."""
    (tmp_path / "pyproject.toml").write_text('[tool.tasktrace]\napp_name = "pyproject"\n')
    (tmp_path / "tasktrace.toml").write_text('app_name = "toml"\n')
    assert load(env={}, cwd=str(tmp_path)).app_name == "toml"
    assert find_config_file(env={}, cwd=str(tmp_path)) == (
        tmp_path / "tasktrace.toml",
        "tasktrace.toml",
    )


def test_load_pyproject_table(tmp_path: Path) -> None:
    """[tool.tasktrace] in pyproject.toml is used, with tool.tasktrace. in key paths."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n\n[tool.tasktrace]\napp_name = "py"\n'
        '[[tool.tasktrace.background_task]]\nfunction = "a:f"\n'
    )
    settings = load(env={}, cwd=str(tmp_path))
    assert settings.app_name == "py" and settings.config_file == str(pyproject)
    assert settings.sources["config_file"] == "discovered"
    assert [t.function for t in settings.background_tasks] == ["a:f"]
    pyproject.write_text("[tool.tasktrace]\nharvest_intervall = 1\n")
    with pytest.raises(
        ConfigurationError, match=r"pyproject.toml: tool.tasktrace.harvest_intervall"
    ):
        load(env={}, cwd=str(tmp_path))


def test_pyproject_without_table_is_ignored(tmp_path: Path) -> None:
    """A pyproject.toml without [tool.tasktrace] is not a config file."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "tasktrace-user"\n')
    assert find_config_file(env={}, cwd=str(tmp_path)) is None
    settings = load(env={"TASKTRACE_APP_NAME": "v"}, cwd=str(tmp_path))
    assert settings.app_name == "v" and settings.config_file is None
    assert settings.sources["config_file"] == "default"


def test_explicit_pyproject_without_table_is_an_error(tmp_path: Path) -> None:
    """A pyproject.toml named explicitly must have the table."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigurationError, match=r"no \[tool.tasktrace\] table"):
        load(path, env={})


def test_broken_pyproject_with_table_is_reported(tmp_path: Path) -> None:
    """A pyproject.toml with the table but a syntax error is reported, not skipped."""
    (tmp_path / "pyproject.toml").write_text('[tool.tasktrace]\napp_name = "unterminated\n')
    with pytest.raises(ConfigurationError, match="invalid TOML"):
        load(env={}, cwd=str(tmp_path))


def test_no_file_uses_defaults_and_variables(tmp_path: Path) -> None:
    """Without any config file, load gives defaults plus variables and flags."""
    settings = load(
        env={"TASKTRACE_APP_NAME": "v"}, cwd=str(tmp_path), overrides={"log_level": "debug"}
    )
    assert settings.app_name == "v" and settings.log_level == "debug"
    assert settings.config_file is None


def test_missing_explicit_file(tmp_path: Path) -> None:
    """A missing explicit file (argument or variable) is an error naming it."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigurationError, match=r"nope.toml: the config file does not exist"):
        load(missing, env={})
    with pytest.raises(ConfigurationError, match="named by TASKTRACE_CONFIG_FILE"):
        load(env={"TASKTRACE_CONFIG_FILE": str(missing)})


def test_missing_file_says_how_it_was_named(tmp_path: Path) -> None:
    """The message names the origin: --config, another origin given, or run-program's
    --config carried in TASKTRACE_CONFIG_FILE (only while the variable still holds it)."""
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigurationError, match=r"named by the --config option\)"):
        load(missing, env={})
    with pytest.raises(ConfigurationError, match=r"named by the FILE argument\)"):
        load(missing, env={}, origin="the FILE argument")
    launched = {"TASKTRACE_CONFIG_FILE": missing, "TASKTRACE_BOOTSTRAP_CONFIG": missing}
    with pytest.raises(ConfigurationError) as info:
        load(env=launched)
    assert "named by the --config option of tasktrace-admin run-program" in str(info.value)
    assert "TASKTRACE_CONFIG_FILE" not in str(info.value)
    changed = dict(launched, TASKTRACE_CONFIG_FILE=str(tmp_path / "other.toml"))
    with pytest.raises(ConfigurationError, match="named by TASKTRACE_CONFIG_FILE"):
        load(env=changed)


def test_unreadable_file(tmp_path: Path) -> None:
    """A path that cannot be read (a directory) is an error naming it."""
    with pytest.raises(ConfigurationError, match="cannot read the config file"):
        load(tmp_path, env={})


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line and column."""
    path = tmp_path / "tasktrace.toml"
    path.write_text('app_name = "ok"\nharvest_interval = = 5\n')
    with pytest.raises(ConfigurationError) as info:
        load(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML")
    assert "line 2" in message and "column" in message


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported as such."""
    path = tmp_path / "tasktrace.toml"
    path.write_bytes(b'app_name = "\xff"\n')
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load(path, env={})


def test_load_problems_name_the_file(tmp_path: Path) -> None:
    """Problems found by load name the file path that was read."""
    path = tmp_path / "tasktrace.toml"
    path.write_text("enabled = 1\n")
    with pytest.raises(ConfigurationError, match=rf"^{path}: enabled: expected a boolean"):
        load(path, env={})


def test_load_environment_argument(tmp_path: Path) -> None:
    """load(environment=...) applies that [env.X] table."""
    path = tmp_path / "tasktrace.toml"
    path.write_text(SPEC_EXAMPLE)
    settings = load(path, env={}, environment="production")
    assert settings.app_name == "billing-worker-prod"
    assert settings.reporter.types == ("sqlite", "otlp")
    assert settings.sources["app_name"] == f"{path} [env.production]"


def test_generated_starter_file_loads(tmp_path: Path) -> None:
    """A file holding STARTER_CONFIG loads."""
    path = tmp_path / "tasktrace.toml"
    path.write_text(STARTER_CONFIG)
    assert load(path, env={}).app_name == "my-worker"


def test_import_is_cheap() -> None:
    """Importing tasktrace.config loads no TOML parser, wrapt, httpx, asyncio or sqlite3."""
    code = (
        "import sys, tasktrace.config\n"
        "heavy = ['tomllib', 'tomli', 'wrapt', 'httpx', 'asyncio', 'sqlite3',\n"
        "         'importlib.metadata', 'difflib']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "[]"


def test_cpu_time_is_off_by_default_and_set_by_file_or_variable() -> None:
    """cpu_time defaults to false; the file and TASKTRACE_CPU_TIME turn it on, with sources."""
    assert config.parse({}, "t.toml").cpu_time is False
    from_file = config.parse({"cpu_time": True}, "t.toml")
    assert from_file.cpu_time is True and from_file.sources["cpu_time"] == "t.toml"
    from_env = config.parse({}, "t.toml", env={"TASKTRACE_CPU_TIME": "1"})
    assert from_env.cpu_time is True and from_env.sources["cpu_time"] == "TASKTRACE_CPU_TIME"
    with pytest.raises(ConfigurationError, match="cpu_time"):
        config.parse({"cpu_time": "yes"}, "t.toml")


def _table(functions: list[Any]) -> Dict[str, Any]:
    return {"background_task": [{"function": f} for f in functions]}


def test_large_target_tables_give_what_entry_by_entry_checks_give() -> None:
    """A table long enough to be checked in bulk gives the same targets, sources and
    problems as the entry-by-entry checks (globs, spaces, odd entries included)."""
    plain = [f"pkg_{i}.jobs:Cls_{i}.run" for i in range(200)]
    settings = parse(_table(plain), "big.toml")
    assert [t.function for t in settings.background_tasks] == plain
    assert settings.background_tasks[199].source == "big.toml: background_task[200]"
    assert settings.background_tasks[0] == parse(_table(plain[:1]), "big.toml").background_tasks[0]
    mixed = [*plain, " spaced.mod : f ", "globbed:run_*", "ünï:f"]
    functions = [t.function for t in parse(_table(mixed), "big.toml").background_tasks]
    assert functions == [*plain, "spaced.mod:f", "globbed:run_*", "ünï:f"]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("a:b\nc:d", "background_task[101].function"),
        ("a:b:c", "more than one ':'"),
        (5, "expected a non-empty string"),
        ("nocolon", "has no ':'"),
    ],
)
def test_one_bad_entry_in_a_large_table_is_reported(bad: Any, fragment: str) -> None:
    """A bad entry among many is reported as it would be alone, with its position."""
    functions: list[Any] = [f"m{i}:f" for i in range(100)]
    with pytest.raises(ConfigurationError) as info:
        parse(_table([*functions, bad]), "big.toml")
    (problem,) = info.value.problems
    assert "background_task[101]" in problem and fragment in problem


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://user:URL-PASSWORD@host:notaport/v1?token=TOKEN-VALUE",
        "https://user:URL-PASSWORD@host:99999/v1",
        "https://user:URL-PASSWORD/v1",
    ],
)
def test_bad_endpoint_port_is_rejected_without_secrets(endpoint: str) -> None:
    """An endpoint whose port is not a number is refused; the message hides credentials."""
    (problem,) = _problems({"reporter": {"endpoint": endpoint}})
    assert "reporter.endpoint" in problem or "endpoint" in problem
    assert "port that is not a number" in problem
    for secret in ("URL-PASSWORD", "TOKEN-VALUE", "notaport"):
        assert secret not in problem


def test_one_redact_url() -> None:
    """The OTLP reporter's messages use config's redact_url, the only one."""
    from tasktrace.reporters import otlp

    assert otlp.redact_url is redact_url


@pytest.mark.parametrize(
    ("key", "value"),
    [("shutdown_timeout", 1e10), ("harvest_interval", 1e308), ("reporter.timeout", 1e300)],
)
def test_seconds_past_the_platform_wait_limit_are_refused(key: str, value: float) -> None:
    """A number of seconds above threading.TIMEOUT_MAX (which a wait cannot take) is
    refused, and the message names the key and the limit."""
    import threading

    section, _, name = key.rpartition(".")
    data: Dict[str, Any] = {section: {name: value}} if section else {name: value}
    message = _one_problem(data)
    assert key in message
    assert "threading.TIMEOUT_MAX" in message and f"{threading.TIMEOUT_MAX:.0f}" in message


@pytest.mark.parametrize(
    ("variable", "text"),
    [("TASKTRACE_SHUTDOWN_TIMEOUT", "1e10"), ("TASKTRACE_HARVEST_INTERVAL", "1e308")],
)
def test_seconds_variables_past_the_wait_limit_are_refused(variable: str, text: str) -> None:
    """The same limit holds for TASKTRACE_* variables, which are named in the message."""
    message = _one_problem({}, env={variable: text})
    assert f"environment variable {variable}: must be at most" in message
    assert "threading.TIMEOUT_MAX" in message


def test_seconds_at_the_wait_limit_are_accepted() -> None:
    """threading.TIMEOUT_MAX itself is still a valid number of seconds."""
    import threading

    settings = parse({"shutdown_timeout": threading.TIMEOUT_MAX}, "t.toml")
    assert settings.shutdown_timeout == threading.TIMEOUT_MAX


def test_retention_and_max_size_from_the_file_and_the_variables() -> None:
    """reporter.retention and reporter.max_size take a duration and a size (or seconds and
    bytes); TASKTRACE_RETENTION and TASKTRACE_DB_MAX_SIZE win over the file."""
    settings = config.parse({"reporter": {"retention": "30d", "max_size": "500MB"}}, "t.toml")
    assert settings.reporter.retention == 30 * 86400.0
    assert settings.reporter.max_size == 500_000_000
    assert config.parse({"reporter": {"retention": 3600, "max_size": 4096}}, "t").reporter[-2:] == (
        3600.0,
        4096,
    )
    env = {"TASKTRACE_RETENTION": "12h", "TASKTRACE_DB_MAX_SIZE": "2GiB"}
    from_env = config.settings_from_environment(env)
    assert (from_env.reporter.retention, from_env.reporter.max_size) == (43200.0, 2 * 1024**3)
    defaults = config.Settings().reporter
    assert (defaults.retention, defaults.max_size) == (7 * 86400.0, 1024**3)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"retention": "0d"},
            "reporter.retention: invalid duration '0d': it must be greater than zero",
        ),
        (
            {"retention": "a week"},
            "reporter.retention: invalid duration 'a week': use a number followed by s, m, h or d",
        ),
        (
            {"retention": True},
            'reporter.retention: expected a duration such as "7d", got a boolean',
        ),
        ({"retention": -5}, "reporter.retention: must be greater than zero, got -5"),
        (
            {"max_size": "huge"},
            "reporter.max_size: invalid size 'huge': use a number followed by B, KB, KiB",
        ),
        ({"max_size": 0}, "reporter.max_size: must be greater than zero, got 0"),
        ({"max_size": ["1GiB"]}, 'reporter.max_size: expected a size such as "1GiB", got'),
    ],
)
def test_bad_retention_or_max_size_names_the_key_and_the_forms(
    table: Dict[str, Any], message: str
) -> None:
    """A retention or size that does not parse, or is zero or negative, is a config error
    naming the key, what is wrong and how to write it."""
    with pytest.raises(config.ConfigurationError) as info:
        config.parse({"reporter": table}, "t.toml")
    assert message in str(info.value)
    assert "t.toml" in str(info.value)
