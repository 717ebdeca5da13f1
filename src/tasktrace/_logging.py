"""tasktrace's own log, loaded lazily: ``logging`` is imported on the first message.

The bootstrap runs in every Python process a program starts; importing ``logging`` (and
``traceback``, which it pulls in) costs several milliseconds there, so modules hold a
:class:`LazyLogger` instead of a ``logging.Logger``. ``configure()`` records where messages
go and applies it when the real logger is first needed (or at once, if it already exists).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    import logging

#: The desired level and target ("stderr", "stdout" or a path); None until configured.
_config: Optional[Dict[str, str]] = None
_handler: Optional[logging.Handler] = None
_loggers: Dict[str, LazyLogger] = {}


class LazyLogger:
    """A ``logging.Logger`` stand-in that imports ``logging`` on first use."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Optional[logging.Logger] = None

    @property
    def logger(self) -> logging.Logger:
        """The real logger (created, and configured, on first access)."""
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger(self._name)
            _apply()
        return logger

    def isEnabledFor(self, level: int) -> bool:
        return self.logger.isEnabledFor(level)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.info(msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.warning(msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.error(msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.exception(msg, *args, **kwargs)


def get_logger(name: str = "tasktrace") -> LazyLogger:
    """The lazy logger for ``name`` (a child of "tasktrace")."""
    logger = _loggers.get(name)
    if logger is None:
        logger = _loggers[name] = LazyLogger(name)
    return logger


def configure(level: str, target: str) -> None:
    """Send the "tasktrace" logger's messages to ``target`` at ``level``.

    Applied now if ``logging`` is already loaded, else on the first message.
    """
    global _config
    _config = {"level": level, "target": target}
    if "logging" in sys.modules:
        _apply()


def _apply() -> None:
    """Install the configured handler on the "tasktrace" logger (replacing ours, if any).

    The logger stops propagating to the root logger so the program's own logging setup
    neither duplicates nor swallows tasktrace's messages. It writes to stdout only when
    the user explicitly asked for ``log_file = "stdout"``.
    """
    global _handler
    config = _config
    if config is None:
        return
    import logging

    target = config["target"]
    root = logging.getLogger("tasktrace")
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    elif target == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        try:
            from tasktrace._files import FILE_MODE

            path = os.path.expanduser(target)
            # Created 0600 if new (messages quote errors): FileHandler would use 0644.
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE))
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            handler = logging.StreamHandler(sys.stderr)
            sys.stderr.write(f"tasktrace: cannot open log file {target!r} ({exc}); using stderr\n")
    handler.setFormatter(_safe_formatter("tasktrace %(levelname)s [pid %(process)d] %(message)s"))
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    _handler = handler
    root.addHandler(handler)
    root.setLevel(config["level"].upper())
    root.propagate = False


def _safe_formatter(fmt: str) -> logging.Formatter:
    r"""A ``logging.Formatter`` for ``fmt`` whose output never controls the terminal.

    Messages quote what a program or a remote server wrote (task names, error messages, a
    collector's reply): :func:`tasktrace._sanitize.clean` shows their control characters
    and escape sequences as escapes, and a newline in a message as ``\\n``, so that no
    message can forge a log line of its own. Tracebacks keep their line breaks, each line
    cleaned the same way. (The class is made here because ``logging`` is imported late.)
    """
    import logging

    from tasktrace._sanitize import clean

    class SafeFormatter(logging.Formatter):
        def formatMessage(self, record: logging.LogRecord) -> str:
            record.message = clean(record.message)
            return super().formatMessage(record)

        def formatException(self, ei: Any) -> str:
            return clean(super().formatException(ei), keep_newlines=True)

        def formatStack(self, stack_info: str) -> str:
            return clean(super().formatStack(stack_info), keep_newlines=True)

    return SafeFormatter(fmt)


def _reset_for_tests() -> None:
    """Forget the configuration and remove tasktrace's handler."""
    global _config, _handler
    _config = None
    if _handler is not None and "logging" in sys.modules:
        import logging

        root = logging.getLogger("tasktrace")
        root.removeHandler(_handler)
        _handler.close()
        root.propagate = True
        root.setLevel(logging.NOTSET)
    _handler = None
