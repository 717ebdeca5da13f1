"""Typed, frozen settings, built by a pure ``parse`` from TOML data, plus a thin ``load``.

The pieces, one module each, from the inside out:

* :mod:`._settings` -- the immutable settings every other module reads (``Settings``,
  ``ReporterSettings``, ``TargetSettings``);
* :mod:`._redaction` -- :func:`redact_url` and :func:`redacted_headers`, so that no
  message or listing shows a secret;
* :mod:`._schema` -- one field per setting: its TOML key, its ``TASKTRACE_*`` variable, its
  checker and its default;
* :mod:`._builder` -- :func:`parse` (pure: TOML data + variables + flags -> ``Settings``,
  every problem collected into one :class:`~tasktrace.exceptions.ConfigurationError`) and
  :func:`settings_from_environment` (defaults + variables for a process that never calls
  ``initialize()``; it warns instead of raising);
* :mod:`._files` -- :func:`find_config_file` and :func:`load`, the only file I/O.

What ``show-config`` and ``generate-config`` print (``describe``, ``STARTER_CONFIG``) is in
:mod:`tasktrace.admin._describe`, so that the bootstrap does not load it.

Importing the package must stay cheap (the bootstrap runs in every Python process), so
``tomllib``, ``difflib``, ``urllib`` and ``logging`` are imported inside the functions that
need them and regular expressions are compiled on first use.
"""

from __future__ import annotations

from tasktrace.config._builder import parse, settings_from_environment
from tasktrace.config._files import _CACHE_MIN_SIZE as _CACHE_MIN_SIZE  # (the tests read it)
from tasktrace.config._files import _LAUNCHER_CONFIG as _LAUNCHER_CONFIG  # (the launcher's)
from tasktrace.config._files import find_config_file, load
from tasktrace.config._redaction import redact_url, redacted_headers
from tasktrace.config._schema import MAX_SECONDS
from tasktrace.config._settings import (
    DEFAULT_APP_NAME,
    IntegrationSettings,
    ReporterSettings,
    Settings,
    TargetSettings,
)
from tasktrace.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_APP_NAME",
    "MAX_SECONDS",
    "ConfigurationError",
    "IntegrationSettings",
    "ReporterSettings",
    "Settings",
    "TargetSettings",
    "find_config_file",
    "load",
    "parse",
    "redact_url",
    "redacted_headers",
    "settings_from_environment",
]
