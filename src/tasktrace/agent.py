"""Agent life cycle: ``initialize()`` (settings, logging, import hooks), ``flush`` and shutdown."""

from __future__ import annotations

from typing import Any, Optional

from tasktrace import _logging
from tasktrace._state import STATE
from tasktrace.config import Settings
from tasktrace.exceptions import ConfigurationError

_log = _logging.get_logger()


def configure_logging(settings: Settings) -> None:
    """Send tasktrace's log to ``settings.log_file`` at ``settings.log_level`` (lazily)."""
    _logging.configure(settings.log_level, settings.log_file)


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
    if settings.enabled:
        _install_integrations(settings)
    return settings


#: ``[integrations]`` name -> the module whose import means that job system is in use, and
#: tasktrace's module for it (in :mod:`tasktrace.integrations`, imported only then). Kept
#: here rather than in that package so that start-up, in every process the bootstrap runs
#: in, imports no module for them.
_INTEGRATIONS = (
    ("celery", "celery.signals", "tasktrace.integrations._celery"),
    ("rq", "rq.queue", "tasktrace.integrations._rq"),
    ("dramatiq", "dramatiq.broker", "tasktrace.integrations._dramatiq"),
    ("huey", "huey.api", "tasktrace.integrations._huey"),
    ("arq", "arq.worker", "tasktrace.integrations._arq"),
    ("arq", "arq.connections", "tasktrace.integrations._arq"),
)


class _IntegrationHook:
    """The post-import hook of one integration: import it, let it instrument ``module``."""

    __slots__ = ("integration",)

    def __init__(self, integration: str) -> None:
        self.integration = integration

    def __call__(self, module: Any) -> None:
        import importlib

        importlib.import_module(self.integration).install(module)

    def __repr__(self) -> str:
        return f"<tasktrace integration {self.integration}>"


def _install_integrations(settings: Settings) -> None:
    """Register the post-import hook of every integration ``settings`` enables."""
    enabled = settings.integrations
    hooks = [
        (module, _IntegrationHook(integration))
        for name, module, integration in _INTEGRATIONS
        if getattr(enabled, name, False)
    ]
    if hooks:
        from tasktrace._importlib_bootstrap import register_post_import_hooks

        register_post_import_hooks(hooks)


def flush(timeout: Optional[float] = None) -> bool:
    """Deliver everything recorded so far; returns whether all of it went out in time."""
    recorder = STATE.recorder
    if recorder is None:
        return True
    try:
        return recorder.flush(timeout)
    except Exception:  # noqa: BLE001 - flush() never raises into the program (logged)
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
    except Exception:  # noqa: BLE001 - shutdown_agent() never raises into the program (logged)
        _log.warning("tasktrace: shutdown failed", exc_info=True)
        return False
