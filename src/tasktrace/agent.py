"""Agent life cycle: ``initialize()`` (settings, logging, import hooks), ``flush`` and shutdown."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional

from tasktrace._state import STATE
from tasktrace.config import Settings
from tasktrace.exceptions import ConfigurationError

_log = logging.getLogger("tasktrace")

#: The handler ``initialize()`` installed on the "tasktrace" logger, so a second call
#: can replace it instead of adding another.
_handler: Optional[logging.Handler] = None


def configure_logging(settings: Settings) -> None:
    """Send the "tasktrace" logger to ``settings.log_file`` at ``settings.log_level``.

    The logger stops propagating to the root logger so the program's own logging setup
    neither duplicates nor swallows tasktrace's messages. Never stdout unless the user
    explicitly asked for ``log_file = "stdout"``.
    """
    global _handler
    target = settings.log_file
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    elif target == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        try:
            handler = logging.FileHandler(os.path.expanduser(target), encoding="utf-8")
        except OSError as exc:
            handler = logging.StreamHandler(sys.stderr)
            _log.warning("tasktrace: cannot open log file %r (%s); logging to stderr", target, exc)
    handler.setFormatter(logging.Formatter("tasktrace %(levelname)s [pid %(process)d] %(message)s"))
    if _handler is not None:
        _log.removeHandler(_handler)
        _handler.close()
    _handler = handler
    _log.addHandler(handler)
    _log.setLevel(settings.log_level.upper())
    _log.propagate = False


def initialize(
    config_file: Optional[str] = None,
    environment: Optional[str] = None,
    ignore_errors: Optional[bool] = None,
    *,
    overrides: Optional[dict[str, Any]] = None,
) -> Settings:
    """Load the configuration, set up logging and install the import hooks. Idempotent.

    Args:
        config_file: the TOML file; default: ``TASKTRACE_CONFIG_FILE``, then
            ``./tasktrace.toml``, then ``[tool.tasktrace]`` in ``./pyproject.toml``.
        environment: the ``[env.<name>]`` table to apply (default ``TASKTRACE_ENVIRONMENT``).
        ignore_errors: True: a bad configuration is logged and the defaults are used.
            False or None: it raises (``TASKTRACE_STRICT=1`` also makes hook errors fatal).
        overrides: command-line settings (the launcher's ``--app-name`` and friends).

    Returns:
        The settings in effect.

    Raises:
        ConfigurationError: the configuration is invalid and ``ignore_errors`` is not True.
    """
    with STATE.lock:
        if STATE.initialized:
            return STATE.settings
        from tasktrace.config import load

        try:
            settings = load(config_file, environment=environment, overrides=overrides or {})
        except ConfigurationError:
            if not ignore_errors:
                raise
            _log.warning("tasktrace: invalid configuration; using defaults", exc_info=True)
            settings = STATE.settings
        configure_logging(settings)
        STATE.apply_settings(settings)
        STATE.initialized = True
    if settings.enabled and (settings.background_tasks or settings.function_traces):
        from tasktrace import hooks

        hooks.install(settings)
    return settings


def flush(timeout: Optional[float] = None) -> bool:
    """Deliver everything recorded so far; returns whether all of it went out in time."""
    recorder = STATE.recorder
    if recorder is None:
        return True
    try:
        return recorder.flush(timeout)
    except Exception:
        _log.warning("tasktrace: flush failed", exc_info=True)
        return False


def shutdown_agent(timeout: Optional[float] = None) -> bool:
    """Deliver everything pending, then stop delivery (default timeout: shutdown_timeout).

    Transactions finished afterwards start delivery again, so calling this early never
    loses later work.
    """
    with STATE.lock:
        recorder = STATE.recorder
        STATE.set_recorder(None)
    if recorder is None:
        return True
    try:
        return recorder.shutdown(STATE.settings.shutdown_timeout if timeout is None else timeout)
    except Exception:
        _log.warning("tasktrace: shutdown failed", exc_info=True)
        return False
