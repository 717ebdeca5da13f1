"""Shared fixtures: every test starts and ends with a fresh agent and its own environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import List

import pytest

import tasktrace.apps
from tasktrace._state import STATE
from tasktrace.records import TransactionRecord
from tasktrace.testing import capture_transactions

pytest_plugins = ["pytester"]

#: Environment variables that configure tasktrace, removed for every test.
_CLEARED_PREFIXES = ("TASKTRACE_", "OTEL_")


@pytest.fixture(autouse=True)
def _fresh_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Reset the agent's global state and application handles, and restore ``os.environ``.

    ``TASKTRACE_*`` and ``OTEL_*`` variables (the config reads ``OTEL_EXPORTER_OTLP_*``) set
    in the shell that runs pytest are removed for the test, so that a developer's own
    settings cannot change what the tests see; they are back once the test ends.
    ``XDG_DATA_HOME`` points at a fresh folder, so that a test whose tasks reach the default
    SQLite store writes there, never into the store of the user who runs the tests.
    """
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(_CLEARED_PREFIXES):
            del os.environ[key]
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    _reset_registries()
    try:
        yield
    finally:
        _reset_registries()
        os.environ.clear()
        os.environ.update(saved)


#: Modules with global state and a ``_reset_for_tests()``, reset only once imported (the
#: fixture must not import what a test never used: the recorder, hooks, the OTLP reporter).
_REGISTRIES = (
    "tasktrace._running",
    "tasktrace.hooks",
    "tasktrace.integrations._jobs",
    "tasktrace._logging",
    "tasktrace.recorder",
    "tasktrace.reporters.otlp",
    "tasktrace.resource",
)


def _reset_registries() -> None:
    """Every registry of module-level state back to what a fresh process has."""
    STATE._reset_for_tests()
    tasktrace.apps._reset_for_tests()
    for name in _REGISTRIES:
        module = sys.modules.get(name)
        if module is not None:
            module._reset_for_tests()


@pytest.fixture
def records() -> Iterator[List[TransactionRecord]]:
    """The transactions finished during the test, in finishing order."""
    with capture_transactions() as captured:
        yield captured
