"""The public decorators and wrappers: the four forms of background tasks and function traces.

Each kind comes in the four shapes users of New Relic's agent know:

* ``background_task()`` / ``function_trace()``: decorators;
* ``BackgroundTask`` / ``FunctionTrace``: context managers (in :mod:`tasktrace.blocks`
  and :mod:`tasktrace.segments`);
* ``BackgroundTaskWrapper`` / ``FunctionTraceWrapper``: wrap a callable you hold;
* ``wrap_background_task`` / ``wrap_function_trace``: patch ``module.object_path`` in place.

The wrappers module is imported only when something is actually wrapped, and wrapt only when
a callable that is not a plain function is, so that ``import tasktrace`` (which the
bootstrap does in every process) stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any, Callable, Optional, Tuple, TypeVar, Union, cast

from tasktrace.blocks import resolve_app
from tasktrace.exceptions import TargetError
from tasktrace.targets import _describe_parent, _lookup, _suggest

F = TypeVar("F", bound=Callable[..., Any])
NameSpec = Union[str, Callable[..., Any], None]


def callable_name(obj: Any) -> str:
    """``"module:qualname"`` of a callable, e.g. ``"jobs:Exporter.run"``."""
    from tasktrace.wrappers import callable_name as _callable_name

    return _callable_name(obj)


def BackgroundTaskWrapper(
    wrapped: F,
    application: Any = None,
    name: NameSpec = None,
    group: NameSpec = None,
) -> F:
    """Return ``wrapped`` wrapped so that each call is a background task.

    Args:
        wrapped: a function, method, classmethod/staticmethod object, coroutine function,
            generator function or async generator function.
        application: an app name or a handle from ``application()``; None: the
            configured app name.
        name: the transaction name, or a callable given the call's arguments (the
            instance first for bound methods); default ``callable_name(wrapped)``.
        group: the group, or a callable like ``name``; default ``"Function"``.

    Returns:
        A transparent proxy (``wrapped`` itself if it is already a background task).
    """
    from tasktrace.wrappers import TASK, build_wrapper, is_wrapped, make_task_wrapper

    if is_wrapped(wrapped, TASK):
        return wrapped
    app = resolve_app(application)
    wrapper = make_task_wrapper(wrapped, app, name, group, callable_name(wrapped))
    return cast(F, build_wrapper(wrapped, TASK, wrapper))


def background_task(
    application: Any = None, name: NameSpec = None, group: NameSpec = None
) -> Callable[[F], F]:
    """Decorator: each call of the function is a background-task transaction.

    ``@background_task()`` with the arguments of :func:`BackgroundTaskWrapper`; a bare
    ``@background_task`` works too.
    """
    if isinstance(application, (classmethod, staticmethod)) or (
        callable(application) and not hasattr(application, "effective_name")
    ):
        # Used bare, as @background_task: the "application" is the function itself.
        return cast(Callable[[F], F], BackgroundTaskWrapper(application, None, name, group))

    def decorator(wrapped: F) -> F:
        return BackgroundTaskWrapper(wrapped, application, name, group)

    return decorator


def FunctionTraceWrapper(wrapped: F, name: NameSpec = None, group: NameSpec = None) -> F:
    """Return ``wrapped`` wrapped so that each call inside a transaction is a segment.

    Outside a transaction the call goes straight through. ``name``/``group`` as for
    :func:`BackgroundTaskWrapper`.
    """
    from tasktrace.wrappers import TRACE, build_wrapper, is_wrapped, make_trace_wrapper

    if is_wrapped(wrapped, TRACE):
        return wrapped
    wrapper = make_trace_wrapper(wrapped, name, group, callable_name(wrapped))
    return cast(F, build_wrapper(wrapped, TRACE, wrapper))


def function_trace(name: NameSpec = None, group: NameSpec = None) -> Callable[[F], F]:
    """Decorator: each call inside a transaction is recorded as a function trace.

    ``@function_trace()`` with the arguments of :func:`FunctionTraceWrapper`; a bare
    ``@function_trace`` works too. Since ``name`` comes first, a callable ``name`` is told
    apart from a bare use by its kind: a lambda (or any callable that is not a ``def``
    function, or one given with a ``group``) is a name computed per call; a ``def``
    function given alone is the function to trace. To compute the name with a ``def``
    function, give it to :func:`FunctionTraceWrapper` or pass a ``group`` too.
    """
    if isinstance(name, (classmethod, staticmethod)) or (
        callable(name)
        and group is None
        and hasattr(name, "__code__")
        and getattr(name, "__name__", None) != "<lambda>"
    ):
        # Used bare, as @function_trace.
        return cast(Callable[[F], F], FunctionTraceWrapper(name))

    def decorator(wrapped: F) -> F:
        return FunctionTraceWrapper(wrapped, name, group)

    return decorator


def resolve_path(module: Union[ModuleType, str], object_path: str) -> Tuple[Any, str, Any]:
    """Find ``object_path`` in ``module``: ``(parent, attribute, original)``.

    Each segment is looked up as :mod:`tasktrace.targets` does (for a class, the raw
    object from the ``__dict__`` along the MRO, so classmethod and staticmethod descriptors
    are wrapped as such), but the path may also go through instances; no globs.

    Raises:
        TargetError: the module cannot be imported or a segment does not exist.
    """
    if isinstance(module, str):
        try:
            module = importlib.import_module(module)
        except ImportError as exc:
            raise TargetError(f"cannot import module {module!r}: {exc}") from exc
    parts = object_path.split(".")
    if not object_path or not all(parts):
        raise TargetError(f"invalid object path {object_path!r}: expected e.g. 'Class.method'")
    parent: Any = module
    for part in parts[:-1]:
        parent = _segment(parent, part)
    return parent, parts[-1], _segment(parent, parts[-1])


def _segment(parent: Any, name: str) -> Any:
    found, value = _lookup(parent, name)
    if not found:
        raise TargetError(
            f"{_describe_parent(parent)} has no attribute {name!r}{_suggest(parent, name)}"
        )
    return value


def wrap_resolved(
    kind: str,
    parent: Any,
    attribute: str,
    original: Any,
    default_name: str,
    *,
    application: Any = None,
    name: NameSpec = None,
    group: NameSpec = None,
    location: Optional[Tuple[str, str]] = None,
) -> Any:
    """Patch ``parent.attribute`` (whose raw value is ``original``) with a ``kind`` wrapper.

    The one place that patches: :func:`wrap_background_task`, :func:`wrap_function_trace`
    and the config's import hooks (which have already resolved the target) all end here.

    Args:
        kind: ``"background_task"`` or ``"function_trace"``.
        parent: the module or class holding the target.
        attribute: the target's name in ``parent``.
        original: the raw value of ``parent.attribute`` (a ``classmethod`` or
            ``staticmethod`` object as found in a class's ``__dict__``).
        default_name: the name when ``name`` is None, e.g. ``"jobs:Exporter.run"``.
        application: for background tasks only.
        name: the transaction or trace name: a string, or a callable of the call's
            arguments returning one; None for ``default_name``.
        group: the group, likewise; None for the kind's default.
        location: ``(module name, dotted path)`` of ``parent.attribute``; a wrapt proxy
            installed there notes it, to pickle by that reference as the plain object did.

    Returns:
        The wrapper now stored there (``original`` itself if it was already wrapped).
    """
    label = name if name is not None else default_name
    if kind == "function_trace":
        wrapper = FunctionTraceWrapper(original, label, group)
    else:
        wrapper = BackgroundTaskWrapper(original, application, label, group)
    if wrapper is not original:
        proxies = sys.modules.get("tasktrace._wrapt_proxies")  # imported if it made one
        if (
            location is not None
            and proxies is not None
            and isinstance(wrapper, proxies.TaskTraceWrapper)
        ):
            proxies.install_proxy(wrapper, parent, attribute, location)
            return wrapper
        setattr(parent, attribute, wrapper)
    return wrapper


def wrap_background_task(
    module: Union[ModuleType, str],
    object_path: str,
    application: Any = None,
    name: NameSpec = None,
    group: NameSpec = None,
) -> Any:
    """Patch ``module.object_path`` in place so each call is a background task.

    Args:
        module: a module object or a dotted module name (imported if needed).
        object_path: e.g. ``"send_invoices"`` or ``"Exporter.run"``.
        application: the app (a name or an :func:`~tasktrace.application` handle), as
            for :func:`BackgroundTaskWrapper`; None for the configured one.
        name: as for :func:`BackgroundTaskWrapper`; None for ``"module:object_path"``.
        group: as for :func:`BackgroundTaskWrapper`; None for ``"Function"``.

    Returns:
        The wrapper now stored at ``object_path`` (unchanged if it was already wrapped).

    Raises:
        TargetError: the module or an attribute on the path does not exist.
    """
    parent, attribute, original = resolve_path(module, object_path)
    return wrap_resolved(
        "background_task",
        parent,
        attribute,
        original,
        f"{_module_name(module)}:{object_path}",
        application=application,
        name=name,
        group=group,
        location=(_module_name(module), object_path),
    )


def wrap_function_trace(
    module: Union[ModuleType, str],
    object_path: str,
    name: NameSpec = None,
    group: NameSpec = None,
) -> Any:
    """Patch ``module.object_path`` in place so each call is a function trace."""
    parent, attribute, original = resolve_path(module, object_path)
    return wrap_resolved(
        "function_trace",
        parent,
        attribute,
        original,
        f"{_module_name(module)}:{object_path}",
        name=name,
        group=group,
        location=(_module_name(module), object_path),
    )


def _module_name(module: Union[ModuleType, str]) -> str:
    return module if isinstance(module, str) else module.__name__
