"""tasktrace: config-driven instrumentation of Python background work.

Every listed or decorated function becomes a *background-task transaction*: timed, named,
with its errors and inner function traces, delivered to a reporter (a local SQLite store by
default, or any OpenTelemetry collector over OTLP/HTTP). The API follows New Relic's
``background_task`` family. This module only re-exports; see the submodules for the code.
"""

from tasktrace._version import __version__
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
from tasktrace.application import Application, application, register_application
from tasktrace.exceptions import ConfigurationError, TaskTraceError
from tasktrace.records import ErrorRecord, SegmentRecord, TransactionRecord
from tasktrace.segments import FunctionTrace
from tasktrace.transaction import (
    BackgroundTask,
    Transaction,
    WebTransaction,
    add_custom_attribute,
    current_transaction,
    ignore_transaction,
    notice_error,
    set_transaction_name,
)

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
