"""Unit tests for tasktrace.resource and the OpenTelemetry variables in the config."""

from __future__ import annotations

import logging
import os
import platform

import pytest

from tasktrace import resource
from tasktrace.config import parse


def test_resource_attributes_are_percent_decoded() -> None:
    """Keys and values are percent-decoded and stripped; a later pair wins."""
    pairs, bad = resource.parse_resource_attributes(
        " team = billing%20ops ,k%3Dx=a%2Cb,empty=, team=core,"
    )
    assert pairs == {"team": "core", "k=x": "a,b", "empty": ""}
    assert bad == []


def test_bad_pairs_are_skipped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """No '=', an empty key or a bad escape skips the pair; one warning names them by
    position, never by value."""
    text = "ok=1,novalue,=secret1,bad=%zz,also=%4,good=2"
    pairs, bad = resource.parse_resource_attributes(text)
    assert pairs == {"ok": "1", "good": "2"}
    assert bad == [2, 3, 4, 5]
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        settings = parse({}, "t.toml", env={"OTEL_RESOURCE_ATTRIBUTES": text})
        parse({}, "t.toml", env={"OTEL_RESOURCE_ATTRIBUTES": text})
    assert settings.resource_attributes == {"ok": "1", "good": "2"}
    warnings = [
        r.getMessage() for r in caplog.records if "OTEL_RESOURCE_ATTRIBUTES" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "2, 3, 4, 5" in warnings[0] and "secret1" not in warnings[0]


def test_process_resource_has_every_attribute() -> None:
    """The resource holds SPEC section 9's attributes; OTEL_RESOURCE_ATTRIBUTES overrides
    detected ones (host.name) but not service.name; computed once per process."""
    first = resource.process_resource(
        app_version="1.4.2",
        environment="production",
        attributes={"host.name": "worker-7", "service.name": "ignored", "team": "b"},
    )
    found = dict(first)
    assert found["service.version"] == "1.4.2"
    assert found["deployment.environment.name"] == "production"
    assert found["host.name"] == "worker-7"
    assert found["process.pid"] == os.getpid()
    assert found["process.runtime.name"] == "cpython"
    assert found["process.runtime.version"] == platform.python_version()
    assert (found["telemetry.sdk.name"], found["telemetry.sdk.language"]) == ("tasktrace", "python")
    assert found["telemetry.sdk.version"]
    assert found["team"] == "b" and "service.name" not in found
    assert len(found["service.instance.id"]) == 36
    again = resource.process_resource(
        app_version="1.4.2",
        environment="production",
        attributes={"host.name": "worker-7", "service.name": "ignored", "team": "b"},
    )
    assert again is first
    plain = dict(resource.process_resource())
    assert "deployment.environment.name" not in plain and "service.version" not in plain
    assert plain["service.instance.id"] == found["service.instance.id"]  # one per process


def test_tasktrace_variables_win_over_opentelemetry_ones() -> None:
    """TASKTRACE_* beats OTEL_*; OTEL_SERVICE_NAME names the app only when nothing else
    does; service.name in OTEL_RESOURCE_ATTRIBUTES comes after it."""
    env = {
        "OTEL_SERVICE_NAME": "otel-name",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=res-name",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
        "TASKTRACE_OTLP_ENDPOINT": "http://tt:4318",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
        "TASKTRACE_APP_VERSION": "2.0",
    }
    settings = parse({}, "t.toml", env=env)
    assert settings.app_name == "otel-name"
    assert settings.sources["app_name"] == "OTEL_SERVICE_NAME"
    assert settings.reporter.endpoint == "http://tt:4318"
    assert settings.sources["reporter.endpoint"] == "TASKTRACE_OTLP_ENDPOINT"
    assert settings.reporter.timeout == 2.5
    assert settings.reporter.compression == "none"
    assert settings.reporter.ca_bundle == "/etc/ca.pem"
    assert settings.app_version == "2.0"
    assert parse({"app_name": "from-file"}, "t.toml", env=env).app_name == "from-file"
    assert parse({}, "t.toml", env={**env, "TASKTRACE_APP_NAME": "tt"}).app_name == "tt"
    del env["OTEL_SERVICE_NAME"]
    assert parse({}, "t.toml", env=env).app_name == "res-name"


def test_otel_sdk_disabled() -> None:
    """OTEL_SDK_DISABLED=true disables tasktrace; other values change nothing;
    TASKTRACE_ENABLED wins."""
    assert parse({}, "t.toml", env={"OTEL_SDK_DISABLED": "True"}).enabled is False
    assert parse({"enabled": False}, "t.toml", env={"OTEL_SDK_DISABLED": "false"}).enabled is False
    assert parse({}, "t.toml", env={"OTEL_SDK_DISABLED": "false"}).enabled is True
    both = {"OTEL_SDK_DISABLED": "true", "TASKTRACE_ENABLED": "1"}
    assert parse({}, "t.toml", env=both).enabled is True


def test_bad_otel_timeout_names_the_variable() -> None:
    """A timeout that is not a positive number of milliseconds is a clear error."""
    from tasktrace.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_TIMEOUT"):
        parse({}, "t.toml", env={"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})
