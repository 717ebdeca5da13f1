"""The code that runs between a caller and the function tasktrace wraps: one frame, hidden
where Python allows it.

:mod:`tasktrace.wrappers` decides at wrap time what a call must do; this module builds the
functions that do it, so that the wrapped function can tell as little as possible:

* **Arguments are bound at the call.** A wrapper of a generator, coroutine or async generator
  function is a function of the same kind *with the same parameters* (generated from the
  target's code object), so a call with arguments that do not fit raises ``TypeError`` at
  the call, with Python's own message, and creates nothing. The wrapper hands the bound
  arguments on positionally up to the first one left out, by keyword after it (it cannot
  tell ``f(1, 2)`` from ``f(1, b=2)``, nor an argument passed as its very default object
  from one left out), so the function binds them as the call did; a name callable sees
  them in that shape.
* **The wrapper's frame runs in the wrapped function's module globals**, so
  ``sys._getframe(1).f_globals["__name__"]`` in the wrapped function is its own module.
  Every name the wrappers use is a closure variable (none is read from globals, builtins
  included), so those globals are never consulted and a module shadowing ``len`` changes
  nothing.
* **Warnings and logging skip the wrapper's frames.** CPython's ``warnings`` (and
  ``logging`` since 3.11) skip frames whose file name contains both "importlib" and
  "_bootstrap" when they count ``stacklevel``, as they skip importlib's own frames (the same
  test as in :mod:`tasktrace._importlib_bootstrap`, whose docstring says more). Hence this
  module's name, and the names given to the generated code. A function that calls
  ``warnings.warn(..., stacklevel=2)`` is attributed to the code that called it, as without
  tasktrace, and ``filterwarnings(module=...)`` matches that caller's module.
* **One frame.** The generated generator and async generator wrappers *are* the drivers that
  make the scope current while the wrapped generator runs (there is no per-generator
  context in Python to do it for them), so each step goes through one Python frame whose
  loop sets and resets the context variable inline.

Tracebacks still show the wrapper's frame: nothing in Python can leave it out. Keep nothing
here that warns.
"""

from __future__ import annotations

import linecache
import threading
from types import CodeType, FunctionType
from typing import Any, Callable, Dict, Optional, Tuple

from tasktrace._logging import get_logger
from tasktrace._scopes import _Scope, open_task_scope
from tasktrace._state import STATE
from tasktrace.transaction import (
    _CURRENT,
    Segment,
    Transaction,
    _perf_counter,
    is_error,
)

Opener = Callable[[], Optional[_Scope]]
OpenerFor = Callable[[Any, Any, Any], Opener]
WrapperFunction = Callable[[Any, Any, Tuple[Any, ...], Dict[str, Any]], Any]

_log = get_logger()

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08


def rehome(function: Any, module_globals: Dict[str, Any]) -> Any:
    """``function`` again, running in ``module_globals`` (it must read no global names)."""
    moved = FunctionType(
        function.__code__,
        module_globals,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    moved.__kwdefaults__ = function.__kwdefaults__
    moved.__qualname__ = function.__qualname__
    return moved


# -- sync functions: closures, moved into the wrapped function's globals ---------------------


def call_in_scope(scope: Optional[_Scope], wrapped: Any, args: Any, kwargs: Any) -> Any:
    if scope is None:
        return wrapped(*args, **kwargs)
    error: Optional[BaseException] = None
    scope.activate()
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        error = exc
        raise
    finally:
        scope.deactivate()
        scope.close(error)
        error = None


def _home(func: Any, function: Any) -> Any:
    """``function`` moved into ``func``'s module globals, when ``func`` has any."""
    module_globals = getattr(func, "__globals__", None)
    if isinstance(func, FunctionType) and isinstance(module_globals, dict):
        return rehome(function, module_globals)
    return function


def fast_task(func: Callable[..., Any], app: Optional[str], name: str, group: str) -> Any:
    """The hot path: a plain wrapper making each call of ``func`` a background task.

    For the common case (a sync function with a fixed name and group) everything is
    inlined here: a flag read, a context-variable read, the transaction, the call. A
    nested task (a segment of the current transaction) opens its scope in line too, so
    that the frame calling ``func`` is always this one.
    """
    state = STATE
    get_current = _CURRENT.get
    set_current = _CURRENT.set
    reset_current = _CURRENT.reset
    transaction = Transaction
    error_test = is_error
    base_exception = BaseException
    open_scope = open_task_scope

    def task(*args: Any, **kwargs: Any) -> Any:
        if not state.enabled:
            return func(*args, **kwargs)
        node = get_current()
        if node is None or node.txn.finished:
            txn = transaction(app, name, group, True)
            token = set_current(txn)
            try:
                return func(*args, **kwargs)
            except base_exception as exc:
                if error_test(exc):
                    txn._record_exception(exc)
                raise
            finally:
                reset_current(token)
                txn._finish()
        scope = open_scope(app, name, group)
        if scope is None:
            return func(*args, **kwargs)
        error = None
        scope.activate()
        try:
            return func(*args, **kwargs)
        except base_exception as exc:
            error = exc
            raise
        finally:
            scope.deactivate()
            scope.close(error)
            error = None

    return _home(func, task)


#: The code of :func:`fast_task`'s wrapper: a frame running it holds its open transaction in
#: the local ``txn``, which is how the harvest thread finds the running tasks that this
#: path (unlike every other) does not enter in :data:`tasktrace.transaction.OPEN`.
FAST_TASK_CODE: CodeType = next(
    const
    for const in fast_task.__code__.co_consts
    if isinstance(const, CodeType) and const.co_name == "task"
)


def fast_trace(func: Callable[..., Any], name: str, group: str) -> Any:
    """The hot path for traces: ``open_segment()`` and a scope, inlined."""
    state = STATE
    get_current = _CURRENT.get
    set_current = _CURRENT.set
    reset_current = _CURRENT.reset
    segment = Segment
    perf_counter = _perf_counter
    length = len

    def trace(*args: Any, **kwargs: Any) -> Any:
        node = get_current()
        if node is None:
            return func(*args, **kwargs)
        txn = node.txn
        if txn.finished:
            return func(*args, **kwargs)
        segments = txn.segments
        if segments is None:
            segments = txn.segments = []
        index = length(segments)
        if index >= state.settings.max_segments:
            txn._drop_segment()
            return func(*args, **kwargs)
        seg = segment(txn, index, name, group, node.index, perf_counter())
        segments.append(seg)
        token = set_current(seg)
        try:
            return func(*args, **kwargs)
        finally:
            seg.duration = perf_counter() - seg.start
            reset_current(token)

    return _home(func, trace)


def sync_wrapper(func: Callable[..., Any], opener_for: OpenerFor) -> Any:
    """A sync wrapper computing its name or group per call."""
    base_exception = BaseException

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = opener_for(None, args, kwargs)()
        if scope is None:
            return func(*args, **kwargs)
        error = None
        scope.activate()
        try:
            return func(*args, **kwargs)
        except base_exception as exc:
            error = exc
            raise
        finally:
            scope.deactivate()
            scope.close(error)
            error = None

    return _home(func, wrapper)


# -- generated wrappers: same parameters, one frame ----------------------------------------
#
# Each template is a function body; {head} is its "def" line and {prologue} sets _tt_inner
# (the wrapped generator or coroutine, created) and _tt_scope (the scope, opened). Every
# name is a local or a closure variable of the factory the source is wrapped in.

_COROUTINE = """\
{head}
{prologue}
    if _tt_scope is None:
        return await _tt_inner
    _tt_error = None
    _tt_scope.activate()
    try:
        return await _tt_inner
    except _tt_base_exception as _tt_exc:
        _tt_error = _tt_exc
        raise
    finally:
        _tt_scope.deactivate()
        _tt_scope.close(_tt_error)
        _tt_error = None
"""

# The scope is current only while the wrapped generator runs: each step may be taken from
# a different thread or task, whose own context must not change. A step sets and resets
# the context variable around one send() in the same context, so the reset cannot fail.
_GENERATOR = """\
{head}
{prologue}
    if _tt_scope is None:
        return (yield from _tt_inner)
    _tt_node = _tt_scope.node
    _tt_send = _tt_inner.send
    _tt_error = None
    try:
        _tt_token = _tt_set(_tt_node)
        try:
            _tt_item = _tt_send(None)
        finally:
            _tt_reset(_tt_token)
        while True:
            try:
                _tt_value = yield _tt_item
            except _tt_generator_exit:
                _tt_token = _tt_set(_tt_node)
                try:
                    _tt_inner.close()
                finally:
                    _tt_reset(_tt_token)
                raise
            except _tt_base_exception as _tt_exc:
                _tt_token = _tt_set(_tt_node)
                try:
                    _tt_item = _tt_inner.throw(_tt_exc)
                finally:
                    _tt_reset(_tt_token)
                continue
            _tt_token = _tt_set(_tt_node)
            try:
                _tt_item = _tt_send(_tt_value)
            finally:
                _tt_reset(_tt_token)
    except _tt_stop_iteration as _tt_stop:
        return _tt_stop.value
    except _tt_base_exception as _tt_exc:
        _tt_error = _tt_exc
        raise
    finally:
        _tt_scope.close(_tt_error)
        _tt_error = None
"""

# An async generator cannot delegate with "yield from": it forwards each step itself.
_ASYNC_GENERATOR = """\
{head}
{prologue}
    _tt_asend = _tt_inner.asend
    if _tt_scope is None:
        try:
            _tt_item = await _tt_asend(None)
            while True:
                try:
                    _tt_value = yield _tt_item
                except _tt_generator_exit:
                    await _tt_inner.aclose()
                    raise
                except _tt_base_exception as _tt_exc:
                    _tt_item = await _tt_inner.athrow(_tt_exc)
                    continue
                _tt_item = await _tt_asend(_tt_value)
        except _tt_stop_async_iteration:
            return
    _tt_node = _tt_scope.node
    _tt_error = None
    try:
        _tt_token = _tt_set(_tt_node)
        try:
            _tt_item = await _tt_asend(None)
        finally:
            _tt_reset(_tt_token)
        while True:
            try:
                _tt_value = yield _tt_item
            except _tt_generator_exit:
                _tt_token = _tt_set(_tt_node)
                try:
                    await _tt_inner.aclose()
                finally:
                    _tt_reset(_tt_token)
                raise
            except _tt_base_exception as _tt_exc:
                _tt_token = _tt_set(_tt_node)
                try:
                    _tt_item = await _tt_inner.athrow(_tt_exc)
                finally:
                    _tt_reset(_tt_token)
                continue
            _tt_token = _tt_set(_tt_node)
            try:
                _tt_item = await _tt_asend(_tt_value)
            finally:
                _tt_reset(_tt_token)
    except _tt_stop_async_iteration:
        return
    except _tt_base_exception as _tt_exc:
        _tt_error = _tt_exc
        raise
    finally:
        _tt_scope.close(_tt_error)
        _tt_error = None
"""

_TEMPLATES = {"coroutine": _COROUTINE, "generator": _GENERATOR, "asyncgen": _ASYNC_GENERATOR}

#: What the generated code may use, each a closure variable of its factory.
_CELLS = (
    "_tt_func",
    "_tt_opener_for",
    "_tt_pack",
    "_tt_set",
    "_tt_reset",
    "_tt_base_exception",
    "_tt_generator_exit",
    "_tt_stop_iteration",
    "_tt_stop_async_iteration",
)

_compiled: Dict[str, Callable[..., Any]] = {}
_compile_lock = threading.Lock()


def _factory(source: str) -> Callable[..., Any]:
    """The factory function for a generated ``source`` (compiled once per distinct text)."""
    factory = _compiled.get(source)
    if factory is not None:
        return factory
    with _compile_lock:
        factory = _compiled.get(source)
        if factory is None:
            # The name holds "importlib" and "_bootstrap", so that warnings skip the frame.
            filename = f"<tasktrace wrapper {len(_compiled) + 1} (importlib._bootstrap)>"
            text = f"def _tt_factory({', '.join(_CELLS)}):\n"
            text += "".join(f"    {line}\n" if line else "\n" for line in source.splitlines())
            text += "    return _tt_wrapper\n"
            namespace: Dict[str, Any] = {"__builtins__": {}}
            exec(compile(text, filename, "exec"), namespace)
            lines = text.splitlines(keepends=True)
            linecache.cache[filename] = (len(text), None, lines, filename)
            factory = namespace["_tt_factory"]
            _compiled[source] = factory
    return factory


def _cells(func: Any, opener_for: Any, pack: Any) -> Dict[str, Any]:
    return {
        "_tt_func": func,
        "_tt_opener_for": opener_for,
        "_tt_pack": pack,
        "_tt_set": _CURRENT.set,
        "_tt_reset": _CURRENT.reset,
        "_tt_base_exception": BaseException,
        "_tt_generator_exit": GeneratorExit,
        "_tt_stop_iteration": StopIteration,
        "_tt_stop_async_iteration": StopAsyncIteration,
    }


def _build(flavour: str, head: str, prologue: str, cells: Dict[str, Any]) -> Any:
    body = _TEMPLATES[flavour].format(head=head, prologue=prologue)
    return _factory(body)(**cells)


def _packer(code: CodeType, defaults: Tuple[Any, ...], kwdefaults: Dict[str, Any]) -> Any:
    """``pack(positional, rest, keyword_only, kw) -> (args, kwargs)`` for ``code``'s
    parameters: the call's shape again, from the values the wrapper's parameters bound.

    A parameter whose value *is* its default object is taken as not passed (so the function
    applies its default itself); one passed by keyword after a gap is passed by keyword.
    """
    npos = code.co_argcount
    nposonly = code.co_posonlyargcount
    names = code.co_varnames[:npos]
    kwnames = code.co_varnames[npos : npos + code.co_kwonlyargcount]
    missing = object()
    first_default = npos - len(defaults)
    pos_defaults = (missing,) * first_default + tuple(defaults)
    kw_defaults = tuple(kwdefaults.get(name, missing) for name in kwnames)

    def pack(positional: Any, rest: Any, keyword_only: Any, kw: Any) -> Any:
        kwargs: Dict[str, Any] = {}
        if rest:
            args = positional + rest
        else:
            end = first_default
            while end < npos and positional[end] is not pos_defaults[end]:
                end += 1
            last = nposonly - 1
            while last >= end and positional[last] is pos_defaults[last]:
                last -= 1
            end = max(end, last + 1)
            args = positional[:end]
            for i in range(end, npos):
                value = positional[i]
                if value is not pos_defaults[i]:
                    kwargs[names[i]] = value
        for name, value, default in zip(kwnames, keyword_only, kw_defaults):
            if value is not default:
                kwargs[name] = value
        if kw:
            kwargs.update(kw)
        return args, kwargs

    return pack


def same_signature_wrapper(func: Any, flavour: str, opener_for: OpenerFor) -> Optional[Any]:
    """A ``flavour`` function with ``func``'s parameters, or None when they cannot be copied."""
    code = func.__code__
    npos = code.co_argcount
    nkwonly = code.co_kwonlyargcount
    varnames = code.co_varnames
    names = list(varnames[: npos + nkwonly])
    star = varnames[npos + nkwonly] if code.co_flags & _CO_VARARGS else None
    starstar = None
    if code.co_flags & _CO_VARKEYWORDS:
        starstar = varnames[npos + nkwonly + (1 if star else 0)]
    every = [*names, *([star] if star else []), *([starstar] if starstar else [])]
    if any(n.startswith("_tt_") or not n.isidentifier() for n in every):
        return None
    defaults = func.__defaults__ or ()
    kwdefaults = func.__kwdefaults__ or {}
    params = []
    first_default = npos - len(defaults)
    for i, n in enumerate(names[:npos]):
        params.append(f"{n}=None" if i >= first_default else n)
        if i == code.co_posonlyargcount - 1:
            params.append("/")
    if star:
        params.append(f"*{star}")
    elif nkwonly:
        params.append("*")
    params += [f"{n}=None" if n in kwdefaults else n for n in names[npos:]]
    if starstar:
        params.append(f"**{starstar}")
    keyword = "def" if flavour == "generator" else "async def"
    head = f"{keyword} _tt_wrapper({', '.join(params)}):"
    positional = "".join(f"{n}, " for n in names[:npos])
    if not defaults and not kwdefaults:
        # A trailing comma: "(*seqs,)" is a tuple, "(*seqs)" a syntax error.
        args = f"({positional}{'*' + star + ',' if star else ''})"
        kw_items = "".join(f"{n!r}: {n}, " for n in names[npos:])
        kwargs = f"{{{kw_items}{'**' + starstar if starstar else ''}}}"
        pack = None
        prologue = f"    _tt_a = {args}\n    _tt_k = {kwargs}"
    else:
        pack = _packer(code, defaults, kwdefaults)
        keyword_only = "".join(f"{n}, " for n in names[npos:])
        prologue = (
            f"    _tt_a, _tt_k = _tt_pack(({positional}), {star or '()'},"
            f" ({keyword_only}), {starstar or 'None'})"
        )
    prologue += (
        "\n    _tt_inner = _tt_func(*_tt_a, **_tt_k)"
        "\n    _tt_scope = _tt_opener_for(None, _tt_a, _tt_k)()"
    )
    try:
        made = _build(flavour, head, prologue, _cells(func, opener_for, pack))
    except (SyntaxError, ValueError):  # a signature this generator cannot spell: fall back
        _log.debug("tasktrace cannot copy the parameters of %r", func, exc_info=True)
        return None
    renamed: Any = made.__code__.replace(co_name=code.co_name, **_qualname(func))
    wrapper = FunctionType(
        renamed,
        func.__globals__,
        code.co_name,
        func.__defaults__,
        made.__closure__,
    )
    wrapper.__kwdefaults__ = dict(kwdefaults) if kwdefaults else None
    return wrapper


def _qualname(func: Any) -> Dict[str, str]:
    # Python 3.11+ names a function by its code's qualified name in argument errors.
    if hasattr(CodeType, "co_qualname"):
        return {"co_qualname": func.__code__.co_qualname}
    return {}


# -- the wrapt path: drivers with fixed parameters --------------------------------------------


class _Closer:
    """Closes a coroutine created eagerly when its driver goes away, started or not.

    A coroutine closed (or collected) before it starts never ran its driver's body, so the
    wrapped coroutine inside would be collected unawaited, and Python would warn about a
    coroutine the user never saw. Closing a finished coroutine does nothing.
    """

    __slots__ = ("coro",)

    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def __del__(self) -> None:
        try:
            self.coro.close()
        except Exception:  # pragma: no cover - defensive: never raise from a finalizer  # noqa: BLE001
            pass


def _driver(flavour: str, head: str, prologue: str) -> Any:
    made = _build(flavour, head, prologue, _cells(None, None, None))
    return rehome(made, globals())


_drive_coroutine = _driver(
    "coroutine",
    "async def _tt_wrapper(_tt_closer, _tt_opener):",
    "    _tt_inner = _tt_closer.coro\n    _tt_scope = _tt_opener()",
)
_drive_generator = _driver(
    "generator", "def _tt_wrapper(_tt_inner, _tt_opener):", "    _tt_scope = _tt_opener()"
)
_drive_async_generator = _driver(
    "asyncgen", "async def _tt_wrapper(_tt_inner, _tt_opener):", "    _tt_scope = _tt_opener()"
)


def _rename(driver: Any, inner: Any) -> None:
    """Give ``driver`` the name of the generator or coroutine it drives (its repr, and the
    "never awaited" warning, name the user's function)."""
    try:
        driver.__name__ = inner.__name__
        driver.__qualname__ = inner.__qualname__
    except (AttributeError, TypeError):  # pragma: no cover - not a native generator
        pass


def make_flavoured(flavour: str, opener_for: OpenerFor) -> WrapperFunction:
    """The wrapt-style wrapper function of a ``flavour`` target whose names may be computed.

    It creates the wrapped generator or coroutine at the call (a call that does not fit
    raises there) and returns the driver around it.
    """
    if flavour == "coroutine":

        def coroutine_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            inner = wrapped(*args, **kwargs)
            coro = _drive_coroutine(_Closer(inner), opener_for(instance, args, kwargs))
            _rename(coro, inner)
            return coro

        call: Any = coroutine_call
    elif flavour == "generator":

        def generator_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            gen = wrapped(*args, **kwargs)
            driver = _drive_generator(gen, opener_for(instance, args, kwargs))
            _rename(driver, gen)
            return driver

        call = generator_call
    elif flavour == "asyncgen":

        def asyncgen_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            agen = wrapped(*args, **kwargs)
            driver = _drive_async_generator(agen, opener_for(instance, args, kwargs))
            _rename(driver, agen)
            return driver

        call = asyncgen_call
    else:

        def sync_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            opener = opener_for(instance, args, kwargs)
            return call_in_scope(opener(), wrapped, args, kwargs)

        call = sync_call
    call.flavour = flavour
    call.opener_for = opener_for
    return call  # type: ignore[no-any-return]


__all__ = [
    "call_in_scope",
    "fast_task",
    "fast_trace",
    "make_flavoured",
    "rehome",
    "same_signature_wrapper",
    "sync_wrapper",
]
