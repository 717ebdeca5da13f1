"""tasktrace: config-driven instrumentation of Python background work.

Every listed or decorated function becomes a *background-task transaction*: timed, named,
with its errors and inner function traces, delivered to a reporter (a local SQLite store by
default, or any OpenTelemetry collector over OTLP/HTTP). The API follows New Relic's
``background_task`` family. This module only re-exports; see the submodules for the code.

The names are loaded on first use (PEP 562), so ``import tasktrace``, which the bootstrap
does in every Python process a program starts, costs next to nothing until the API is used.
"""

from __future__ import annotations

from tasktrace._version import __version__

# ``typing`` costs milliseconds to import and the launcher (``python -m tasktrace``)
# imports this package before every program it starts; mypy treats a name TYPE_CHECKING
# as True, so the names below are still checked.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tasktrace.agent import flush, initialize, shutdown_agent
    from tasktrace.api import (
        BackgroundTaskWrapper,
        FunctionTraceWrapper,
        background_task,
        callable_name,
        function_trace,
        wrap_background_task,
        wrap_function_trace,
    )
    from tasktrace.apps import Application, application, register_application
    from tasktrace.blocks import BackgroundTask, WebTransaction
    from tasktrace.current import (
        add_custom_attribute,
        current_transaction,
        ignore_transaction,
        notice_error,
        set_transaction_name,
    )
    from tasktrace.exceptions import ConfigurationError, TaskTraceError
    from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
    from tasktrace.segments import FunctionTrace
    from tasktrace.transaction import Transaction

_EXPORTS = {
    "Application": "tasktrace.apps",
    "BackgroundTask": "tasktrace.blocks",
    "BackgroundTaskWrapper": "tasktrace.api",
    "ConfigurationError": "tasktrace.exceptions",
    "ErrorRecord": "tasktrace.records",
    "FunctionTrace": "tasktrace.segments",
    "FunctionTraceWrapper": "tasktrace.api",
    "SegmentRecord": "tasktrace.records",
    "TaskTraceError": "tasktrace.exceptions",
    "Transaction": "tasktrace.transaction",
    "TransactionRecord": "tasktrace.records",
    "WebTransaction": "tasktrace.blocks",
    "add_custom_attribute": "tasktrace.current",
    "application": "tasktrace.apps",
    "background_task": "tasktrace.api",
    "callable_name": "tasktrace.api",
    "current_transaction": "tasktrace.current",
    "flush": "tasktrace.agent",
    "function_trace": "tasktrace.api",
    "ignore_transaction": "tasktrace.current",
    "initialize": "tasktrace.agent",
    "notice_error": "tasktrace.current",
    "register_application": "tasktrace.apps",
    "set_transaction_name": "tasktrace.current",
    "shutdown_agent": "tasktrace.agent",
    "wrap_background_task": "tasktrace.api",
    "wrap_function_trace": "tasktrace.api",
}

__all__ = [
    "Application",
    "BackgroundTask",
    "BackgroundTaskWrapper",
    "ConfigurationError",
    "ErrorRecord",
    "FunctionTrace",
    "FunctionTraceWrapper",
    "SegmentRecord",
    "TaskTraceError",
    "Transaction",
    "TransactionRecord",
    "WebTransaction",
    "__version__",
    "add_custom_attribute",
    "application",
    "background_task",
    "callable_name",
    "current_transaction",
    "flush",
    "function_trace",
    "ignore_transaction",
    "initialize",
    "notice_error",
    "register_application",
    "set_transaction_name",
    "shutdown_agent",
    "wrap_background_task",
    "wrap_function_trace",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tasktrace' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
