"""Fixtures for tests that run real programs under the launcher."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
from _launcher import Launcher
from _rabbitmq import rabbitmq_url  # noqa: F401 - the RabbitMQ tests' broker
from _services import redis_url, rotel  # noqa: F401 - fixtures shared by the modules here


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Everything under tests/integration/ carries the integration marker."""
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def launcher(tmp_path: Path) -> Launcher:
    """A launcher working in this test's tmp_path."""
    return Launcher(tmp_path)
