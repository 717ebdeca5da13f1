"""What a wrapped function can see of its wrapper: argument binding, frames, warnings (issue 11)."""

from __future__ import annotations

import asyncio
import dis
import functools
import gc
import importlib
import inspect
import re
import sys
import types
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest

import tasktrace
from tasktrace import background_task, function_trace
from tasktrace.records import TransactionRecord

Records = List[TransactionRecord]

DECORATORS = [
    pytest.param(lambda: background_task(), id="task"),
    pytest.param(lambda: function_trace(), id="trace"),
    pytest.param(lambda: background_task(name=lambda *a, **k: "n"), id="task-named"),
    pytest.param(lambda: function_trace(group=lambda *a, **k: "g"), id="trace-grouped"),
]


def _gen(a: int, b: int = 2) -> Iterator[int]:
    yield a + b


async def _co(a: int, b: int = 2) -> int:
    return a + b


async def _agen(a: int, b: int = 2) -> AsyncIterator[int]:
    yield a + b


def _call_error(call: Callable[[], Any]) -> str:
    with pytest.raises(TypeError) as info:
        call()
    return str(info.value)


# -- 1. arguments are bound at the call ------------------------------------------------------


@pytest.mark.parametrize("decorate", DECORATORS)
@pytest.mark.parametrize("func", [_gen, _co, _agen], ids=["generator", "coroutine", "asyncgen"])
def test_wrong_arguments_raise_at_the_call(
    decorate: Callable[[], Any], func: Any, records: Records
) -> None:
    """Calling a wrapped generator, coroutine or async generator function with arguments
    that do not fit raises TypeError at the call, with the message plain Python gives."""
    wrapped = decorate()(func)
    for bad in [(), (1, 2, 3)]:
        plain = _call_error(lambda bad=bad: func(*bad))
        assert _call_error(lambda bad=bad: wrapped(*bad)) == plain
    plain = _call_error(lambda: func(1, c=3))
    assert _call_error(lambda: wrapped(1, c=3)) == plain
    assert records == []


@pytest.mark.parametrize("decorate", DECORATORS)
@pytest.mark.parametrize("kind", ["partial", "callable"])
def test_wrong_arguments_raise_at_the_call_through_wrapt(
    decorate: Callable[[], Any], kind: str, records: Records
) -> None:
    """The same for targets that are not plain functions (wrapped by wrapt)."""
    for func in (_gen, _co, _agen):
        target = functools.partial(func) if kind == "partial" else functools.partial(func, 1)
        wrapped = decorate()(target)
        with pytest.raises(TypeError):
            wrapped(1, 2, 3)
    assert records == []


def _shapes(*args: Any, **kwargs: Any) -> Tuple[Any, ...]:
    return args, kwargs


def test_arguments_and_their_shape_pass_through(records: Records) -> None:
    """Defaults, keyword-only, positional-only, *args and **kwargs reach the function as in
    a plain call. A name callable sees the same arguments, positional up to the first one
    left out (or passed as its very default object), by keyword after it: a wrapper whose
    parameters bind the call cannot tell ``f(1, 2)`` from ``f(1, b=2)``."""
    seen: List[Any] = []

    def name(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return "n"

    sentinel: List[int] = []

    def gen(a, b=None, /, c=2, d=sentinel, *rest, e, f=5, **kw):  # type: ignore[no-untyped-def]
        yield (a, b, c, d, rest, e, f, kw)

    wrapped = background_task(name=name)(gen)
    calls = [
        ((1,), {"e": 0}),
        ((1, None, 3), {"e": 0}),
        ((1, 2), {"c": 3, "e": 0, "x": 9}),
        ((1,), {"d": 4, "e": 0}),
        ((1, 2, 3, 4, 5, 6), {"e": 0, "f": 7, "a": 8}),
    ]
    for args, kwargs in calls:
        assert list(wrapped(*args, **kwargs)) == list(gen(*args, **kwargs))
    assert seen == [
        ((1,), {"e": 0}),
        ((1,), {"c": 3, "e": 0}),
        ((1, 2, 3), {"e": 0, "x": 9}),
        ((1,), {"d": 4, "e": 0}),
        ((1, 2, 3, 4, 5, 6), {"e": 0, "f": 7, "a": 8}),
    ]
    assert len(records) == len(calls)


def _only_star(*seqs, **kwargs):  # type: ignore[no-untyped-def]
    yield (seqs, kwargs)


async def _only_star_co(*seqs, **kwargs):  # type: ignore[no-untyped-def]
    return (seqs, kwargs)


async def _only_star_agen(*seqs):  # type: ignore[no-untyped-def]
    yield seqs


def test_star_only_parameters_get_a_same_signature_wrapper(records: Records) -> None:
    """``def f(*seqs, **kwargs)`` with no named parameter (as toolz's ``diff``) gets a
    wrapper of its own kind with its parameters, not the fallback (the packed
    arguments once came out as ``(*seqs)``, a syntax error)."""
    gen = background_task()(_only_star)
    assert list(gen(1, 2, key=3)) == [((1, 2), {"key": 3})]
    assert inspect.isgeneratorfunction(gen)
    assert gen.__code__.co_varnames[:2] == ("seqs", "kwargs")
    co = background_task()(_only_star_co)
    assert asyncio.run(co(1, k=2)) == ((1,), {"k": 2})
    assert co.__code__.co_varnames[:2] == ("seqs", "kwargs")

    async def drain() -> List[Any]:
        return [item async for item in background_task()(_only_star_agen)(4, 5)]

    assert asyncio.run(drain()) == [(4, 5)]
    assert len(records) == 3


def test_wrapper_defaults_are_the_functions(records: Records) -> None:
    """The wrapper's own defaults are the function's (introspection that reads them)."""

    def gen(a: int, b: int = 2, *, c: int = 3) -> Iterator[int]:
        yield a + b + c

    wrapped = background_task()(gen)
    assert wrapped.__defaults__ == (2,)
    assert wrapped.__kwdefaults__ == {"c": 3}
    assert list(wrapped(1)) == [6]


@pytest.mark.parametrize("decorate", DECORATORS)
def test_unstarted_coroutine_is_silent_and_records_nothing(
    decorate: Callable[[], Any], records: Records, recwarn: pytest.WarningsRecorder
) -> None:
    """A wrapped coroutine closed, cancelled or dropped before it starts warns about nothing
    and records nothing, for plain functions and for wrapt-wrapped targets alike."""

    async def co(x: int) -> int:
        await asyncio.sleep(0)
        return x

    for target in (co, functools.partial(co)):
        wrapped = decorate()(target)

        async def main(wrapped: Any = wrapped) -> None:
            with tasktrace.BackgroundTask(name="outer"):
                task = asyncio.ensure_future(wrapped(1))
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        wrapped(1).close()
        asyncio.run(main())
        gc.collect()
    assert [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)] == []
    assert [r.name for r in records] == ["outer", "outer"]
    assert all(r.segments == () for r in records)


def test_unawaited_wrapped_coroutine_warns_by_its_own_name(records: Records) -> None:
    """A wrapped coroutine that is dropped unawaited warns once, naming the user's coroutine,
    as the plain one would."""

    async def lonely() -> None:
        pass

    for target in (lonely, functools.partial(lonely)):
        wrapped = background_task()(target)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrapped()
            gc.collect()
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1
        assert "lonely" in messages[0]
    assert records == []


# -- 2. the wrapper's frame ------------------------------------------------------------------

USER_MODULE = """
import sys
import warnings


def warns():
    warnings.warn("from warns", UserWarning, stacklevel=2)
    return 1


def frame_module():
    return sys._getframe(1).f_globals["__name__"]


def gen_warns():
    warnings.warn("from gen_warns", UserWarning, stacklevel=2)
    yield sys._getframe(1).f_globals["__name__"]


async def co_warns():
    warnings.warn("from co_warns", UserWarning, stacklevel=2)
    return sys._getframe(1).f_globals["__name__"]


async def agen_warns():
    warnings.warn("from agen_warns", UserWarning, stacklevel=2)
    yield sys._getframe(1).f_globals["__name__"]
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    (tmp_path / "tt_user_mod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("tt_user_mod", None)
    module = importlib.import_module("tt_user_mod")
    yield module
    sys.modules.pop("tt_user_mod", None)


def _run(func: Any) -> Any:
    """Call ``func`` and run what it returns to the end; one line, so that plain and
    wrapped calls are made from the same place."""
    return _finish(func())


def _finish(result: Any) -> Any:
    if isinstance(result, types.GeneratorType) or hasattr(result, "gi_frame"):
        return list(result)
    if asyncio.iscoroutine(result):
        return asyncio.run(result)
    if hasattr(result, "__anext__"):

        async def collect() -> List[Any]:
            return [x async for x in result]

        return asyncio.run(collect())
    return result


def _warning_of(func: Any) -> Tuple[str, int, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(func)
    (w,) = caught
    return (w.filename, w.lineno, str(w.message))


WRAPS = [
    pytest.param(lambda f: background_task()(f), id="task"),
    pytest.param(lambda f: function_trace()(f), id="trace"),
    pytest.param(lambda f: background_task(name=lambda *a: "n")(f), id="task-named"),
    pytest.param(lambda f: function_trace()(background_task()(f)), id="trace-over-task"),
]


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("which", ["warns", "gen_warns", "co_warns", "agen_warns"])
def test_warning_stacklevel_points_past_the_wrapper(
    user_module: types.ModuleType, wrap: Callable[[Any], Any], which: str, records: Records
) -> None:
    """``warnings.warn(stacklevel=2)`` in a wrapped function names the same file and line
    as without the wrapper, inside a task and outside."""
    func = getattr(user_module, which)
    plain = _warning_of(func)
    assert plain[0] == __file__ or which in ("co_warns", "agen_warns")
    assert _warning_of(wrap(func)) == plain
    with tasktrace.BackgroundTask(name="outer"):
        assert _warning_of(wrap(func)) == plain


@pytest.mark.parametrize("wrap", WRAPS)
def test_filterwarnings_by_module_sees_the_caller(
    user_module: types.ModuleType, wrap: Callable[[Any], Any], records: Records
) -> None:
    """A filter by module matches the calling module, as without the wrapper."""
    wrapped = wrap(user_module.warns)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=UserWarning, module=re.escape(__name__))
        with pytest.raises(UserWarning):
            wrapped()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=UserWarning, module="tasktrace")
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("error", category=UserWarning, module="tasktrace")
        assert wrapped() == 1


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("which", ["frame_module", "gen_warns", "co_warns", "agen_warns"])
def test_calling_frame_has_the_functions_globals(
    user_module: types.ModuleType, wrap: Callable[[Any], Any], which: str, records: Records
) -> None:
    """The frame that calls a wrapped plain function runs in that function's module
    globals, not tasktrace's."""
    func = getattr(user_module, which)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _run(wrap(func))
        with tasktrace.BackgroundTask(name="outer"):
            inside = _run(wrap(func))
    expected = "tt_user_mod"
    assert result in (expected, [expected])
    assert inside == result


def _loads_globals(code: types.CodeType) -> List[str]:
    names = [
        i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    ]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _loads_globals(const)
    return names


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("which", ["warns", "gen_warns", "co_warns", "agen_warns"])
def test_wrappers_read_no_globals(
    user_module: types.ModuleType, wrap: Callable[[Any], Any], which: str
) -> None:
    """Running in the user's globals, the wrapper reads none of them (not even a builtin a
    module might shadow): every name it uses is a closure variable."""
    wrapped = wrap(getattr(user_module, which))
    assert wrapped.__globals__ is user_module.__dict__
    assert _loads_globals(wrapped.__code__) == []


# -- 3. the drivers: one frame per step, same semantics ---------------------------------------


def _echo_gen() -> Iterator[Any]:
    received = []
    try:
        while True:
            value = yield len(received)
            received.append(value)
    except KeyError:
        yield "caught"
    return received


async def _echo_agen() -> AsyncIterator[Any]:
    received = []
    try:
        while True:
            value = yield len(received)
            received.append(value)
    except KeyError:
        yield "caught"
    yield received


@pytest.mark.parametrize("inside", [False, True], ids=["outside-task", "inside-task"])
@pytest.mark.parametrize("target", ["function", "partial"])
def test_traced_generators_pass_send_throw_and_return(
    inside: bool, target: str, records: Records
) -> None:
    """send/throw/return values and asend/athrow pass through a traced generator and a
    traced async generator, with a scope (inside a task) and without one (outside)."""
    gen_func: Any = _echo_gen if target == "function" else functools.partial(_echo_gen)
    agen_func: Any = _echo_agen if target == "function" else functools.partial(_echo_agen)
    gen = function_trace(name="g")(gen_func)
    agen = function_trace(name="a")(agen_func)

    def run_sync() -> Any:
        it = gen()
        assert next(it) == 0
        assert it.send("a") == 1
        assert it.throw(KeyError("k")) == "caught"
        with pytest.raises(StopIteration) as stop:
            next(it)
        return stop.value.value

    async def run_async() -> Any:
        it = agen()
        assert await it.__anext__() == 0
        assert await it.asend("b") == 1
        assert await it.athrow(KeyError("k")) == "caught"
        last = await it.__anext__()
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()
        return last

    if inside:
        with tasktrace.BackgroundTask(name="outer"):
            assert run_sync() == ["a"]
            assert asyncio.run(run_async()) == ["b"]
        (rec,) = records
        assert [s.name for s in rec.segments] == ["g", "a"]
        assert rec.errors == ()
    else:
        assert run_sync() == ["a"]
        assert asyncio.run(run_async()) == ["b"]
        assert records == []


def test_traced_generator_segment_is_current_only_while_it_runs(records: Records) -> None:
    """A function trace called by a traced generator is its child; one called between its
    steps is the task's."""

    @function_trace(name="inner")
    def inner() -> None:
        pass

    @function_trace(name="rows")
    def rows() -> Iterator[int]:
        inner()
        yield 1
        inner()
        yield 2

    with tasktrace.BackgroundTask(name="outer"):
        for _ in rows():
            inner()
    (rec,) = records
    names = [s.name for s in rec.segments]
    parents = [(s.name, names[s.parent] if s.parent >= 0 else "outer") for s in rec.segments]
    assert parents == [
        ("rows", "outer"),
        ("inner", "rows"),
        ("inner", "outer"),
        ("inner", "rows"),
        ("inner", "outer"),
    ]


def test_traced_generator_error_and_close(records: Records) -> None:
    """A task generator's error is recorded; close() runs the clean-up inside the scope."""
    seen: List[Any] = []

    @background_task(name="fails")
    def fails() -> Iterator[int]:
        yield 1
        raise ValueError("bad")

    @background_task(name="closed")
    def closed() -> Iterator[int]:
        try:
            yield 1
        finally:
            seen.append(tasktrace.current_transaction())

    with pytest.raises(ValueError):
        list(fails())
    it = closed()
    next(it)
    it.close()
    assert seen[0] is not None and seen[0].name == "closed"
    assert {r.name: [e.message for e in r.errors] for r in records} == {
        "fails": ["bad"],
        "closed": [],
    }


def test_wrapt_wrapped_generators_carry_the_functions_name(records: Records) -> None:
    """Through wrapt too, the generator, coroutine or async generator returned is named
    after the user's function (its repr, and an unawaited coroutine's warning)."""
    for func in (_gen, _co, _agen):
        obj = background_task()(functools.partial(func))(1)
        assert obj.__qualname__ == func.__qualname__
        assert func.__name__ in repr(obj)
        if not hasattr(obj, "aclose"):  # an unstarted async generator needs no closing
            obj.close()


def test_a_parameter_named_like_the_wrappers_falls_back(records: Records) -> None:
    """A function with a parameter named ``_tt_...`` still works (bound at its start)."""

    def gen(_tt_inner: int) -> Iterator[int]:
        yield _tt_inner

    wrapped = background_task(name="fallback")(gen)
    assert inspect.isgeneratorfunction(wrapped)
    assert list(wrapped(4)) == [4]
    assert [r.name for r in records] == ["fallback"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="logging skips such frames from 3.11")
@pytest.mark.parametrize("wrap", WRAPS)
def test_logging_stacklevel_points_past_the_wrapper(
    wrap: Callable[[Any], Any], caplog: pytest.LogCaptureFixture, records: Records
) -> None:
    """``logging``'s ``stacklevel=2`` names the caller's line, as without the wrapper."""
    import logging

    def logs() -> None:
        logging.getLogger("tt-test").warning("hello", stacklevel=2)

    for func in (logs, wrap(logs)):
        _run(func)
    plain, wrapped = ((r.pathname, r.lineno, r.funcName) for r in caplog.records)
    assert wrapped == plain


@pytest.mark.parametrize("which", ["generator", "asyncgen", "coroutine"])
def test_a_traceback_shows_one_wrapper_frame(which: str, records: Records) -> None:
    """An error in a wrapped generator, async generator or coroutine shows one tasktrace
    frame between the caller and the function."""
    import traceback

    def gen() -> Iterator[int]:
        raise ValueError("g")
        yield 1

    async def agen() -> AsyncIterator[int]:
        raise ValueError("a")
        yield 1

    async def co() -> None:
        raise ValueError("c")

    func = {"generator": gen, "asyncgen": agen, "coroutine": co}[which]
    with pytest.raises(ValueError) as info:
        _run(background_task()(func))
    frames = traceback.extract_tb(info.value.__traceback__)
    ours = [f for f in frames if "tasktrace" in f.filename]
    assert len(ours) == 1
    assert frames[-1].name == func.__name__
