"""Tests for the public surface of ``import tasktrace``: ``__all__`` kept honest."""

from __future__ import annotations

import inspect

import tasktrace

#: The names in SPEC section 2's table.
SPEC_NAMES = {
    "background_task",
    "BackgroundTask",
    "BackgroundTaskWrapper",
    "wrap_background_task",
    "function_trace",
    "FunctionTrace",
    "FunctionTraceWrapper",
    "wrap_function_trace",
    "WebTransaction",
    "application",
    "register_application",
    "callable_name",
    "current_transaction",
    "add_custom_attribute",
    "notice_error",
    "set_transaction_name",
    "ignore_transaction",
    "initialize",
    "shutdown_agent",
    "flush",
    "TaskTraceError",
    "ConfigurationError",
}

#: What the package exports beyond the contract, on purpose (types users annotate with).
EXTRA_NAMES = {
    "Application",
    "ErrorRecord",
    "SegmentRecord",
    "Transaction",
    "TransactionRecord",
    "__version__",
}


def test_all_is_sorted() -> None:
    """__all__ is sorted, without duplicates."""
    assert tasktrace.__all__ == sorted(tasktrace.__all__)
    assert len(set(tasktrace.__all__)) == len(tasktrace.__all__)


def test_all_is_exactly_the_contract_plus_extras() -> None:
    """__all__ holds the SPEC section 2 names plus the deliberate extras, nothing else."""
    assert set(tasktrace.__all__) == SPEC_NAMES | EXTRA_NAMES


def test_every_exported_name_exists() -> None:
    """Each name in __all__ is an attribute of the package."""
    for name in tasktrace.__all__:
        assert hasattr(tasktrace, name), name


def test_star_import_gives_exactly_all() -> None:
    """``from tasktrace import *`` binds exactly the names in __all__."""
    namespace: dict = {}
    exec("from tasktrace import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(tasktrace.__all__)


def test_signatures_follow_the_contract() -> None:
    """The public callables take the parameters SPEC section 2 lists, in order."""
    expected = {
        "background_task": ["application", "name", "group"],
        "BackgroundTask": ["application", "name", "group"],
        "BackgroundTaskWrapper": ["wrapped", "application", "name", "group"],
        "wrap_background_task": ["module", "object_path", "application", "name", "group"],
        "function_trace": ["name", "group"],
        "FunctionTrace": ["name", "group"],
        "FunctionTraceWrapper": ["wrapped", "name", "group"],
        "wrap_function_trace": ["module", "object_path", "name", "group"],
        "WebTransaction": ["application", "name", "group"],
        "application": ["name"],
        "register_application": ["name", "timeout"],
        "callable_name": ["obj"],
        "current_transaction": [],
        "add_custom_attribute": ["key", "value"],
        "notice_error": ["error"],
        "set_transaction_name": ["name", "group"],
        "ignore_transaction": ["flag"],
        "shutdown_agent": ["timeout"],
        "flush": ["timeout"],
    }
    for name, params in expected.items():
        signature = inspect.signature(getattr(tasktrace, name))
        positional = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        assert positional == params, name
    initialize = inspect.signature(tasktrace.initialize).parameters
    assert list(initialize)[:3] == ["config_file", "environment", "ignore_errors"]
    assert inspect.signature(tasktrace.WebTransaction).parameters["group"].default == "Uri"


def test_exceptions_tree() -> None:
    """ConfigurationError derives from TaskTraceError, which is an Exception."""
    assert issubclass(tasktrace.ConfigurationError, tasktrace.TaskTraceError)
    assert issubclass(tasktrace.TaskTraceError, Exception)


def test_version_is_a_string() -> None:
    """__version__ is a non-empty string."""
    assert isinstance(tasktrace.__version__, str) and tasktrace.__version__
