"""The shared fixtures in ``conftest.py`` do what every other test relies on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

_INNER_TEST = """
import os

from tasktrace.config import ReporterSettings, settings_from_environment


def test_sees_no_shell_settings():
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in os.environ
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in os.environ
    assert "TASKTRACE_APP_NAME" not in os.environ
    settings = settings_from_environment(os.environ)
    assert settings.reporter.endpoint == ReporterSettings().endpoint
    assert dict(settings.reporter.headers) == {}
"""


def test_fresh_agent_hides_otel_and_tasktrace_variables_then_restores_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The autouse fixture removes OTEL_* and TASKTRACE_* for a test and puts them back after."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-the-shell:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=shell-secret")
    monkeypatch.setenv("TASKTRACE_APP_NAME", "from-the-shell")
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_inner=_INNER_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://from-the-shell:4318"
    assert os.environ["OTEL_EXPORTER_OTLP_HEADERS"] == "api-key=shell-secret"
    assert os.environ["TASKTRACE_APP_NAME"] == "from-the-shell"
