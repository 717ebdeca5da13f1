"""Tests for tasktrace.reporters.registry: built-ins, plugins and unknown names."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, List

import pytest

from tasktrace.config import ReporterSettings, Settings
from tasktrace.exceptions import ReporterError
from tasktrace.reporters import registry
from tasktrace.reporters.base import Reporter
from tasktrace.reporters.console import ConsoleReporter
from tasktrace.reporters.memory import MemoryReporter


def _settings(*types: str) -> Settings:
    return Settings()._replace(reporter=ReporterSettings(types=types))


def test_builtins_are_built_in_order_once() -> None:
    """Built-in names build their reporters, in order, duplicates once."""
    reporters = registry.create_reporters(_settings("console", "memory", "console"))
    assert [type(r) for r in reporters] == [ConsoleReporter, MemoryReporter]
    assert all(isinstance(r, Reporter) for r in reporters)


def test_builtins_do_not_read_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry points are only consulted for names that are not built in."""

    def fail() -> Any:
        raise AssertionError("entry points read")

    monkeypatch.setattr(registry, "_entry_points", fail)
    registry.create_reporters(_settings("console", "jsonl"))


def test_plugin_from_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name is looked up in the tasktrace.reporters entry-point group."""
    built: List[Settings] = []

    def factory(settings: Settings) -> MemoryReporter:
        built.append(settings)
        return MemoryReporter(name="kafka")

    entry = SimpleNamespace(name="kafka", value="x:y", load=lambda: factory)
    monkeypatch.setattr(registry, "_entry_points", lambda: {"kafka": entry})
    (reporter,) = registry.create_reporters(_settings("kafka"))
    assert reporter.name == "kafka" and len(built) == 1


def test_unknown_name_suggests(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name raises ReporterError with a did-you-mean and the known names."""
    monkeypatch.setattr(registry, "_entry_points", lambda: {})
    with pytest.raises(ReporterError) as info:
        registry.create_reporters(_settings("sqllite"))
    message = str(info.value)
    assert "did you mean 'sqlite'?" in message
    assert "console, jsonl, memory, otlp, sqlite" in message


def test_failing_plugin_is_a_reporter_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin that fails to load is reported as ReporterError naming it."""

    def load() -> Any:
        raise ImportError("no module named kafka")

    entry = SimpleNamespace(name="kafka", value="kafka_rep:Reporter", load=load)
    monkeypatch.setattr(registry, "_entry_points", lambda: {"kafka": entry})
    with pytest.raises(ReporterError, match="kafka_rep:Reporter"):
        registry.create_reporters(_settings("kafka"))
