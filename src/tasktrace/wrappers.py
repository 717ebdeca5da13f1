"""The wrappers that turn a callable into a background task or a function trace.

Everything that can be decided once is decided here, at wrap time: the default name, the
application, and whether the target is a plain function, a coroutine function, a generator
function or an async generator function. Each case gets its own small wrapper function, so
a call does a few attribute reads, creates the transaction and calls through.

A plain Python function (also inside a classmethod or staticmethod) is wrapped by another
plain function of the same kind (sync, ``async def``, generator or async generator) that
carries its ``__name__``, ``__qualname__``, ``__module__``, ``__doc__``, ``__wrapped__`` and
``__signature__``: it binds as a method like any function, pickles by reference like any
function, and costs about a quarter of a ``wrapt.FunctionWrapper`` call. It has the
function's own parameters, runs in the function's module globals, and is skipped by
``warnings`` when it counts ``stacklevel``: :mod:`tasktrace._calls_importlib_bootstrap`
builds it and says how. Other callables are wrapped by ``wrapt.FunctionWrapper``
subclasses (:mod:`tasktrace._wrapt_proxies`), imported only when needed.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from typing import Any, Callable, FrozenSet, Optional, Union

from tasktrace._calls_importlib_bootstrap import (
    Opener,
    WrapperFunction,
    fast_task,
    fast_trace,
    make_flavoured,
    same_signature_wrapper,
    sync_wrapper,
)
from tasktrace._logging import get_logger
from tasktrace._scopes import _Scope, open_task_scope, open_trace_scope

_log = get_logger()

#: A name or group: a string, or a callable given the call's arguments.
NameSpec = Union[str, Callable[..., Any], None]

TASK = "background_task"
TRACE = "function_trace"


def is_wrapped(obj: Any, kind: str) -> bool:
    """Whether ``obj`` is already wrapped by tasktrace as ``kind`` (at any depth)."""
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    try:
        return kind in getattr(obj, "__tasktrace_kinds__", ())
    except Exception:  # an exotic object whose attribute lookup fails: not ours  # noqa: BLE001
        return False


def _is_wrapt_proxy(obj: Any) -> bool:
    """Whether ``obj`` is a wrapt proxy (without importing wrapt if nothing has)."""
    wrapt = sys.modules.get("wrapt")
    return wrapt is not None and isinstance(obj, wrapt.ObjectProxy)


def callable_name(obj: Any) -> str:
    """``"module:qualname"`` of a callable, e.g. ``"jobs:Exporter.run"``.

    Handles functions, bound and unbound methods, classmethods, staticmethods, nested
    classes, ``functools.partial`` and objects already wrapped by tasktrace or wrapt.
    A callable instance is named after its class.
    """
    for _ in range(32):
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, (classmethod, staticmethod)):
            obj = obj.__func__
        elif _is_wrapt_proxy(obj):
            obj = obj.__wrapped__
        else:
            break
    if inspect.ismethod(obj):
        obj = obj.__func__
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    if not isinstance(qualname, str):
        cls = type(obj)
        qualname = cls.__qualname__
        module = cls.__module__
    elif module is None:
        # A method of a built-in type ([].append) has no __module__: use its type's.
        owner = getattr(obj, "__self__", None)
        if owner is not None:
            module = (owner if isinstance(owner, type) else type(owner)).__module__
    return f"{module or '<unknown>'}:{qualname}"


def _flavour(wrapped: Any) -> str:
    """``"sync"``, ``"coroutine"``, ``"generator"`` or ``"asyncgen"`` for a wrapped target."""
    func = wrapped
    for _ in range(32):
        if isinstance(func, (classmethod, staticmethod)):
            func = func.__func__
        elif isinstance(func, functools.partial):
            func = func.func
        elif _is_wrapt_proxy(func) or hasattr(func, "__tasktrace_kinds__"):
            func = func.__wrapped__
        else:
            break
    if inspect.isasyncgenfunction(func):
        return "asyncgen"
    if inspect.iscoroutinefunction(func):
        return "coroutine"
    if inspect.isgeneratorfunction(func):
        return "generator"
    return "sync"


# -- building the per-call wrapper functions -------------------------------------------


def _namer(spec: NameSpec, default: str, what: str) -> Callable[[Any, Any, Any], str]:
    """A function computing a name or group per call from a callable ``spec``."""
    assert callable(spec)
    compute = spec

    def name_for(instance: Any, args: Any, kwargs: Any) -> str:
        try:
            if instance is not None:
                return str(compute(instance, *args, **kwargs))
            return str(compute(*args, **kwargs))
        except Exception:  # noqa: BLE001 - the program's name callable may raise anything; the default is used (logged)
            _log.debug("tasktrace: the %s callable failed; using %r", what, default, exc_info=True)
            return default

    return name_for


def _static(spec: NameSpec, default: str) -> Optional[str]:
    """The fixed string for ``spec``, or None when it is a callable computed per call."""
    if spec is None:
        return default
    if callable(spec):
        return None
    return str(spec)


def _make_wrapper(
    wrapped: Any,
    name: NameSpec,
    group: NameSpec,
    default_name: str,
    fast: Callable[[Callable[..., Any], str, str], Any],
    open_scope: Callable[[str, str], Optional[_Scope]],
) -> WrapperFunction:
    """The wrapt-style wrapper function for ``wrapped``, chosen once, at wrap time.

    A sync target with a fixed name and group gets the inlined hot path (``fast``), which
    ``_function_wrapper`` also uses directly for plain functions (``call.fast``); every
    other case computes names per call and opens its scope through ``open_scope``.
    """
    flavour = _flavour(wrapped)
    fixed_name = _static(name, default_name)
    fixed_group = _static(group, "Function")
    if flavour == "sync" and fixed_name is not None and fixed_group is not None:
        n: str = fixed_name
        g: str = fixed_group

        def call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            # The wrapt path (callables that are not plain functions): rare, so it builds
            # the fast wrapper per call rather than keeping a copy of its code here.
            return fast(wrapped, n, g)(*args, **kwargs)

        call.fast = lambda func: fast(func, n, g)  # type: ignore[attr-defined]
        return call
    return make_flavoured(
        flavour,
        _opener_factory(name, group, default_name, lambda n, g: lambda: open_scope(n, g)),
    )


def make_task_wrapper(
    wrapped: Any, app: Optional[str], name: NameSpec, group: NameSpec, default_name: str
) -> WrapperFunction:
    """The wrapt-style wrapper function that makes each call of ``wrapped`` a background task."""
    return _make_wrapper(
        wrapped,
        name,
        group,
        default_name,
        lambda func, n, g: fast_task(func, app, n, g),
        lambda n, g: open_task_scope(app, n, g),
    )


def make_trace_wrapper(
    wrapped: Any, name: NameSpec, group: NameSpec, default_name: str
) -> WrapperFunction:
    """The wrapt-style wrapper function that makes each call of ``wrapped`` a function trace."""
    return _make_wrapper(wrapped, name, group, default_name, fast_trace, open_trace_scope)


def _opener_factory(
    name: NameSpec,
    group: NameSpec,
    default_name: str,
    opener: Callable[[str, str], Opener],
) -> Callable[[Any, Any, Any], Opener]:
    """Per call: compute the name and group (fixed or from callables), return the opener."""
    fixed_name = _static(name, default_name)
    fixed_group = _static(group, "Function")
    name_for = _namer(name, default_name, "name") if fixed_name is None else None
    group_for = _namer(group, "Function", "group") if fixed_group is None else None

    def opener_for(instance: Any, args: Any, kwargs: Any) -> Opener:
        n = fixed_name if name_for is None else name_for(instance, args, kwargs)
        g = fixed_group if group_for is None else group_for(instance, args, kwargs)
        assert n is not None and g is not None
        return opener(n, g)

    return opener_for


# -- the wrapper objects -----------------------------------------------------------------


def build_wrapper(wrapped: Any, kind: str, call: WrapperFunction) -> Any:
    """Wrap ``wrapped`` so that each call goes through ``call(wrapped, instance, args, kwargs)``.

    Returns a function for plain functions (a classmethod/staticmethod of one for those),
    else a wrapt proxy.
    """
    if isinstance(wrapped, (classmethod, staticmethod)) and isinstance(
        wrapped.__func__, types.FunctionType
    ):
        return type(wrapped)(_function_wrapper(wrapped.__func__, kind, call))
    if isinstance(wrapped, types.FunctionType):
        return _function_wrapper(wrapped, kind, call)
    from tasktrace._wrapt_proxies import TaskTraceWrapper

    return TaskTraceWrapper(wrapped, call, kind)


def _function_wrapper(func: Callable[..., Any], kind: str, call: WrapperFunction) -> Any:
    """A plain function of the same kind as ``func`` that does what ``call`` does.

    The instance of a method is simply the first positional argument, as for ``func``.
    The wrapper is built by :mod:`tasktrace._calls_importlib_bootstrap`: the inlined hot
    path for a sync function with fixed names (``call.fast``), else a function with
    ``func``'s parameters that opens its scope with ``call.opener_for``.
    """
    wrapper: Any = None
    fast = getattr(call, "fast", None)
    opener_for = getattr(call, "opener_for", None)
    flavour = getattr(call, "flavour", None) or _flavour(func)
    if fast is not None:
        wrapper = fast(func)
    elif opener_for is not None:
        if flavour == "sync":
            wrapper = sync_wrapper(func, opener_for)
        else:
            wrapper = same_signature_wrapper(func, flavour, opener_for)
    if wrapper is None:
        wrapper = _lazy_wrapper(func, flavour, call)

    functools.update_wrapper(wrapper, func)
    inner: FrozenSet[str] = getattr(func, "__tasktrace_kinds__", frozenset())
    marked: Any = wrapper
    marked.__tasktrace_kinds__ = inner | {kind}
    try:
        # inspect.signature() follows __wrapped__ anyway; getfullargspec() (which some
        # frameworks still use to check arguments) only looks at __signature__.
        marked.__signature__ = inspect.signature(func)
    except (TypeError, ValueError):
        pass
    return wrapper


def _lazy_wrapper(func: Callable[..., Any], flavour: str, call: WrapperFunction) -> Any:
    """A wrapper with ``(*args, **kwargs)`` parameters, for a function whose own parameters
    the generated wrappers cannot copy (a parameter named ``_tt_...``): its arguments are
    bound when the wrapped generator or coroutine starts, not at the call, and it runs in
    tasktrace's globals."""
    wrapper: Callable[..., Any]
    if flavour == "sync":

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return call(func, None, args, kwargs)

    elif flavour == "coroutine":

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await call(func, None, args, kwargs)

    elif flavour == "generator":

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return (yield from call(func, None, args, kwargs))

    else:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            agen = call(func, None, args, kwargs)
            to_send: Any = None
            to_throw: Optional[BaseException] = None
            while True:
                try:
                    if to_throw is None:
                        item = await agen.asend(to_send)
                    else:
                        exc, to_throw = to_throw, None
                        item = await agen.athrow(exc)
                except StopAsyncIteration:
                    return
                try:
                    to_send = yield item
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as exc:  # noqa: BLE001 - every exception thrown into the wrapper is forwarded to the wrapped generator
                    to_throw = exc

    return wrapper
