"""Typed, frozen settings, built by a pure ``parse`` from TOML data, plus a thin ``load``.

The pieces, from the inside out:

* the frozen dataclasses every other module reads (``Settings``, ``ReporterSettings``,
  ``TargetSettings``);
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
``tomllib``, ``pathlib``, ``difflib``, ``urllib`` and ``logging`` are imported inside the
functions that need them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from tasktrace import environment as _vars
from tasktrace.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DEFAULT_APP_NAME",
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


@dataclasses.dataclass(frozen=True, repr=False)
class ReporterSettings:
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
    headers: Mapping[str, str] = dataclasses.field(default_factory=lambda: _EMPTY)
    #: Seconds one export may take, retries included.
    timeout: float = 10.0
    #: A CA bundle file for TLS verification of the collector (None: httpx's default).
    ca_bundle: Optional[str] = None
    #: ``"gzip"`` or ``"none"``.
    compression: str = "gzip"

    def __repr__(self) -> str:
        return (
            f"ReporterSettings(types={self.types!r}, path={self.path!r}, "
            f"endpoint={redact_url(self.endpoint)!r}, "
            f"headers={redacted_headers(self.headers)!r}, timeout={self.timeout!r}, "
            f"ca_bundle={self.ca_bundle!r}, compression={self.compression!r})"
        )


@dataclasses.dataclass(frozen=True)
class TargetSettings:
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


@dataclasses.dataclass(frozen=True)
class Settings:
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
    reporter: ReporterSettings = dataclasses.field(default_factory=ReporterSettings)
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
    sources: Mapping[str, str] = dataclasses.field(default_factory=lambda: _EMPTY)
