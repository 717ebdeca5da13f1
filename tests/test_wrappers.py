"""Tests for tasktrace.wrappers: names, transparency, pickling, coroutine/generator drivers."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import multiprocessing
import pickle
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, List, Optional

import pytest
import wrapt

import _helpers
import tasktrace
from tasktrace import background_task, callable_name, function_trace
from tasktrace.records import TransactionRecord

Records = List[TransactionRecord]
MOD = __name__


class Outer:
    def method(self) -> None:
        pass

    @classmethod
    def cmethod(cls) -> None:
        pass

    @staticmethod
    def smethod() -> None:
        pass

    class Inner:
        def deep(self) -> None:
            pass

    def __call__(self) -> None:
        pass


def top(a: int, b: str = "x", *args: Any, c: float = 1.0, **kw: Any) -> str:
    """Top docstring."""
    return f"{a}{b}{c}"


# -- callable_name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (top, f"{MOD}:top"),
        (Outer.method, f"{MOD}:Outer.method"),
        (Outer().method, f"{MOD}:Outer.method"),
        (Outer.cmethod, f"{MOD}:Outer.cmethod"),
        (Outer().cmethod, f"{MOD}:Outer.cmethod"),
        (Outer.__dict__["cmethod"], f"{MOD}:Outer.cmethod"),
        (Outer.smethod, f"{MOD}:Outer.smethod"),
        (Outer.__dict__["smethod"], f"{MOD}:Outer.smethod"),
        (Outer.Inner.deep, f"{MOD}:Outer.Inner.deep"),
        (Outer.Inner().deep, f"{MOD}:Outer.Inner.deep"),
        (Outer.Inner, f"{MOD}:Outer.Inner"),
        (functools.partial(top, 1), f"{MOD}:top"),
        (functools.partial(functools.partial(top, 1), "y"), f"{MOD}:top"),
        (functools.partial(Outer().method), f"{MOD}:Outer.method"),
        (Outer(), f"{MOD}:Outer"),
        (len, "builtins:len"),
        ([].append, "builtins:list.append"),
        (_helpers.Job.run, "_helpers:Job.run"),
        (_helpers.Job().run, "_helpers:Job.run"),
        (_helpers.Job.make, "_helpers:Job.make"),
        (_helpers.Job.add, "_helpers:Job.add"),
        (_helpers.double, "_helpers:double"),
        (wrapt.FunctionWrapper(top, lambda w, i, a, k: w(*a, **k)), f"{MOD}:top"),
    ],
)
def test_callable_name(obj: Any, expected: str) -> None:
    """callable_name gives module:qualname for every kind of callable, wrapped or not."""
    assert callable_name(obj) == expected


def test_callable_name_of_wrapped_objects() -> None:
    """A tasktrace wrapper (any depth, task or trace) is named after what it wraps."""
    wrapped = tasktrace.BackgroundTaskWrapper(tasktrace.FunctionTraceWrapper(top))
    assert callable_name(wrapped) == f"{MOD}:top"
    assert callable_name(functools.partial(wrapped, 1)) == f"{MOD}:top"


# -- transparency -----------------------------------------------------------------------------


def test_wrapper_keeps_function_metadata() -> None:
    """__name__, __qualname__, __doc__, __module__, __wrapped__ and the signature survive."""
    wrapped = background_task()(top)
    assert wrapped.__name__ == "top"
    assert wrapped.__qualname__ == "top"
    assert wrapped.__doc__ == "Top docstring."
    assert wrapped.__module__ == MOD
    assert wrapped.__wrapped__ is top
    assert inspect.signature(wrapped) == inspect.signature(top)
    traced = function_trace()(top)
    assert traced.__wrapped__ is top
    assert inspect.signature(traced) == inspect.signature(top)


def test_wrapper_keeps_function_kind() -> None:
    """inspect still sees coroutine, generator and async generator functions as such."""

    async def coro() -> None:
        pass

    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> AsyncIterator[int]:
        yield 1

    for decorate in (background_task(), function_trace()):
        c, g, a, s = decorate(coro), decorate(gen), decorate(agen), decorate(top)
        assert inspect.iscoroutinefunction(c)
        assert inspect.isgeneratorfunction(g)
        assert inspect.isasyncgenfunction(a)
        assert not inspect.iscoroutinefunction(s)
        assert not inspect.isgeneratorfunction(s)
        assert not inspect.isasyncgenfunction(s)
        assert not inspect.iscoroutinefunction(g)


def test_async_method_kind_survives_binding() -> None:
    """A decorated async method is a coroutine function bound or unbound."""

    class Svc:
        @background_task()
        async def handle(self) -> int:
            return 1

    assert inspect.iscoroutinefunction(Svc.handle)
    assert inspect.iscoroutinefunction(Svc().handle)


def test_method_binding_is_kept(records: Records) -> None:
    """Methods, classmethods and staticmethods bind as undecorated ones would."""
    job = _helpers.Job(4)
    assert job.run(2) == 8
    assert _helpers.Job.run(job, 3) == 12
    assert _helpers.Job.make(5) == _helpers.Job(5)
    assert job.make(6) == _helpers.Job(6)
    assert _helpers.Job.add(1, 2) == 3
    assert job.add(3, 4) == 7
    assert list(inspect.signature(job.run).parameters) == ["x"]
    assert list(inspect.signature(_helpers.Job.run).parameters) == ["self", "x"]
    assert list(inspect.signature(_helpers.Job.make).parameters) == ["factor"]
    assert list(inspect.signature(_helpers.Job.add).parameters) == ["a", "b"]
    assert len(records) == 6


def test_decorator_under_classmethod_and_staticmethod(records: Records) -> None:
    """@classmethod / @staticmethod applied over the decorator work too."""

    class Svc:
        @classmethod
        @background_task(name=lambda cls, x: f"{cls.__name__}.c{x}")
        def c(cls, x: int) -> Any:
            return cls, x

        @staticmethod
        @background_task(name=lambda x: f"s{x}")
        def s(x: int) -> int:
            return x

    assert Svc.c(1) == (Svc, 1)
    assert Svc().c(2) == (Svc, 2)
    assert Svc.s(3) == 3
    assert Svc().s(4) == 4
    assert [r.name for r in records] == ["Svc.c1", "Svc.c2", "s3", "s4"]


# -- pickling ---------------------------------------------------------------------------------


def test_module_level_function_pickles_by_reference() -> None:
    """A decorated module-level function round-trips through pickle as the same object."""
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(_helpers.double, protocol)) is _helpers.double
    assert copy.copy(_helpers.double) is _helpers.double
    assert copy.deepcopy(_helpers.double) is _helpers.double


def test_bound_methods_pickle(records: Records) -> None:
    """Bound methods, classmethods and staticmethods of a module-level class pickle."""
    job = _helpers.Job(2)
    assert pickle.loads(pickle.dumps(job.run))(5) == 10
    assert pickle.loads(pickle.dumps(_helpers.Job.make))(7) == _helpers.Job(7)
    assert pickle.loads(pickle.dumps(job.make))(8) == _helpers.Job(8)
    assert pickle.loads(pickle.dumps(_helpers.Job.add))(1, 1) == 2
    unbound = pickle.loads(pickle.dumps(_helpers.Job.run))
    assert unbound(job, 1) == 2
    assert len(records) == 5


def test_bound_methods_copy_like_bound_methods(records: Records) -> None:
    """copy gives an equal bound method; deepcopy binds it to a copy of the instance."""
    job = _helpers.Job(2)
    bound = job.run
    assert copy.copy(bound) == bound
    deep = copy.deepcopy(bound)
    assert deep(5) == 10
    assert deep.__self__ is not job and deep.__self__ == job
    holder = {"callback": _helpers.double, "method": job.run}
    cloned = copy.deepcopy(holder)
    assert cloned["callback"] is _helpers.double
    assert cloned["method"](1) == 2


def test_local_function_refuses_to_pickle() -> None:
    """A wrapped local function or lambda cannot be pickled (it could not be found again)."""

    @background_task()
    def local() -> None:
        pass

    with pytest.raises((TypeError, pickle.PicklingError, AttributeError)):
        pickle.dumps(local)
    with pytest.raises((TypeError, pickle.PicklingError, AttributeError)):
        pickle.dumps(background_task()(lambda: None))


@pytest.mark.integration
def test_spawn_pool_runs_decorated_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """A multiprocessing spawn Pool runs a decorated module-level function as a task."""
    # The child reads the environment when tasktrace is imported: keep its records in memory.
    monkeypatch.setenv("TASKTRACE_REPORTER", "memory")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        # A bounded wait: a Pool whose worker dies loses its task and would wait forever.
        result = pool.map_async(_helpers.double_in_task, [1, 2]).get(timeout=120)
    assert result == [(2, "_helpers:double_in_task"), (4, "_helpers:double_in_task")]


# -- generators ---------------------------------------------------------------------------------


def test_generator_is_timed_over_its_whole_life(records: Records) -> None:
    """One transaction from the first step to exhaustion, including time between steps."""

    @background_task(name="gen")
    def gen() -> Iterator[int]:
        yield 1
        yield 2

    it = gen()
    assert records == []
    assert next(it) == 1
    time.sleep(0.05)
    assert records == []
    assert next(it) == 2
    time.sleep(0.05)
    with pytest.raises(StopIteration):
        next(it)
    (rec,) = records
    assert rec.name == "gen"
    assert rec.duration >= 0.09
    assert rec.errors == ()


def test_generator_send_throw_close_and_return_pass_through(records: Records) -> None:
    """send() values, throw() handling and the return value reach the caller unchanged."""

    @background_task()
    def echo() -> Iterator[Any]:
        received = []
        try:
            while True:
                value = yield len(received)
                received.append(value)
        except KeyError:
            yield "caught"
        return received

    it = echo()
    assert next(it) == 0
    assert it.send("a") == 1
    assert it.send("b") == 2
    assert it.throw(KeyError("k")) == "caught"
    with pytest.raises(StopIteration) as stop:
        next(it)
    assert stop.value.value == ["a", "b"]
    assert len(records) == 1
    assert records[0].errors == ()


def test_generator_current_transaction_only_while_stepping(records: Records) -> None:
    """Inside a step the task is current; between steps the caller's context is untouched."""
    seen: List[Optional[str]] = []

    @background_task(name="steps")
    def gen() -> Iterator[None]:
        txn = tasktrace.current_transaction()
        seen.append(None if txn is None else txn.name)
        yield
        txn = tasktrace.current_transaction()
        seen.append(None if txn is None else txn.name)

    it = gen()
    next(it)
    assert tasktrace.current_transaction() is None
    list(it)
    assert seen == ["steps", "steps"]


def test_generator_error_is_recorded_and_reraised(records: Records) -> None:
    """An exception escaping the generator is recorded and propagates as the same object."""
    boom = ValueError("bad item")

    @background_task()
    def gen() -> Iterator[int]:
        yield 1
        raise boom

    it = gen()
    next(it)
    with pytest.raises(ValueError) as info:
        next(it)
    assert info.value is boom
    assert [e.type for e in records[0].errors] == ["builtins:ValueError"]


def test_thrown_exception_not_handled_is_an_error(records: Records) -> None:
    """throw() of an exception the generator does not handle ends the task with that error."""

    @background_task()
    def gen() -> Iterator[int]:
        yield 1

    it = gen()
    next(it)
    exc = RuntimeError("thrown")
    with pytest.raises(RuntimeError) as info:
        it.throw(exc)
    assert info.value is exc
    assert [e.message for e in records[0].errors] == ["thrown"]


def test_generator_closed_after_start_records_without_error(records: Records) -> None:
    """close() ends the task after the generator's own clean-up; GeneratorExit is no error."""
    closed: List[bool] = []

    @background_task()
    def gen() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            time.sleep(0.03)
            closed.append(tasktrace.current_transaction() is not None)

    it = gen()
    next(it)
    it.close()
    assert closed == [True]  # the clean-up ran at close(), inside the task
    (rec,) = records
    assert rec.errors == ()
    assert rec.duration >= 0.025


def test_generator_closed_before_first_step_records_nothing(records: Records) -> None:
    """A generator closed (or dropped) before its first step records nothing."""

    @background_task()
    def gen() -> Iterator[int]:
        yield 1

    gen().close()
    it = gen()
    del it
    assert records == []


def test_generator_stepped_from_another_thread(records: Records) -> None:
    """A generator started on one thread and finished on another is still one task."""

    @background_task(name="moving")
    def gen() -> Iterator[int]:
        yield 1
        yield 2

    it = gen()
    assert next(it) == 1
    out: List[int] = []
    thread = threading.Thread(target=lambda: out.extend(it))
    thread.start()
    thread.join()
    assert out == [2]
    assert [r.name for r in records] == ["moving"]
    assert tasktrace.current_transaction() is None


# -- coroutines and async generators -------------------------------------------------------------


def test_coroutine_is_timed_over_its_whole_life(records: Records) -> None:
    """An async task is one transaction covering its awaits; the result passes through."""

    @background_task(name="co")
    async def co(x: int) -> int:
        await asyncio.sleep(0.05)
        txn = tasktrace.current_transaction()
        assert txn is not None and txn.name == "co"
        return x * 2

    assert asyncio.run(co(4)) == 8
    (rec,) = records
    assert rec.duration >= 0.045


def test_unawaited_coroutine_records_nothing(records: Records) -> None:
    """A coroutine closed before its first step records nothing."""

    @background_task()
    async def co() -> None:
        pass

    coro = co()
    coro.close()
    assert records == []


def test_coroutine_error_and_cancellation(records: Records) -> None:
    """An error is recorded and re-raised as is; CancelledError is not an error."""
    boom = KeyError("missing")

    @background_task(name="fails")
    async def fails() -> None:
        await asyncio.sleep(0)
        raise boom

    @background_task(name="cancelled")
    async def sleeps() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(KeyError) as info:
            await fails()
        assert info.value is boom
        task = asyncio.ensure_future(sleeps())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    by_name = {r.name: r for r in records}
    assert [e.type for e in by_name["fails"].errors] == ["builtins:KeyError"]
    assert by_name["cancelled"].errors == ()


def test_async_generator_aclose_runs_clean_up_inside_the_task(records: Records) -> None:
    """aclose() after a step runs the generator's clean-up before the task ends."""

    @background_task(name="agen")
    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0.03)

    async def main() -> None:
        it = agen()
        await it.__anext__()
        await it.aclose()

    asyncio.run(main())
    (rec,) = records
    assert rec.errors == ()
    assert rec.duration >= 0.025


def test_gathered_tasks_each_get_their_own_transaction(records: Records) -> None:
    """Concurrent asyncio tasks each have their own current transaction."""

    @background_task(name=lambda i: f"task-{i}")
    async def work(i: int) -> str:
        await asyncio.sleep(0.01 * (3 - i))
        tasktrace.add_custom_attribute("i", i)
        txn = tasktrace.current_transaction()
        assert txn is not None
        return txn.name

    async def main() -> List[str]:
        return list(await asyncio.gather(*(work(i) for i in range(3))))

    assert asyncio.run(main()) == ["task-0", "task-1", "task-2"]
    assert sorted((r.name, r.attributes["i"]) for r in records) == [
        ("task-0", 0),
        ("task-1", 1),
        ("task-2", 2),
    ]
    assert len({r.trace_id for r in records}) == 3


def test_async_generator_is_timed_over_its_whole_life(records: Records) -> None:
    """An async generator is one transaction from first step to exhaustion, with asend."""

    @background_task(name="agen")
    async def agen() -> AsyncIterator[Any]:
        got = yield 1
        await asyncio.sleep(0.03)
        yield ("got", got)

    async def main() -> List[Any]:
        it = agen()
        first = await it.__anext__()
        await asyncio.sleep(0.03)
        second = await it.asend("hello")
        rest = [x async for x in it]
        return [first, second, rest]

    assert asyncio.run(main()) == [1, ("got", "hello"), []]
    (rec,) = records
    assert rec.duration >= 0.05
    assert rec.errors == ()


def test_async_generator_athrow_aclose_and_unstarted(records: Records) -> None:
    """athrow errors are recorded; aclose after a step is not an error; unstarted records none."""

    @background_task(name=lambda tag: tag)
    async def agen(tag: str) -> AsyncIterator[int]:
        yield 1
        yield 2

    async def main() -> None:
        unstarted = agen("unstarted")
        await unstarted.aclose()
        closed = agen("closed")
        await closed.__anext__()
        await closed.aclose()
        thrown = agen("thrown")
        await thrown.__anext__()
        exc = ValueError("into agen")
        with pytest.raises(ValueError) as info:
            await thrown.athrow(exc)
        assert info.value is exc

    asyncio.run(main())
    assert {r.name: len(r.errors) for r in records} == {"closed": 0, "thrown": 1}


def test_async_function_trace_inside_task(records: Records) -> None:
    """An async function trace awaited inside an async task is a segment of it."""

    @function_trace(name="fetch")
    async def fetch() -> int:
        await asyncio.sleep(0.02)
        return 1

    @background_task(name="job")
    async def job() -> int:
        return await fetch() + await fetch()

    assert asyncio.run(job()) == 2
    (rec,) = records
    assert [s.name for s in rec.segments] == ["fetch", "fetch"]
    assert all(s.duration >= 0.015 for s in rec.segments)


def test_traced_generator_inside_task(records: Records) -> None:
    """A traced generator's segment covers its whole iteration."""

    @function_trace(name="rows")
    def rows() -> Iterator[int]:
        yield 1
        time.sleep(0.02)
        yield 2

    with tasktrace.BackgroundTask(name="job"):
        assert list(rows()) == [1, 2]
    (seg,) = records[0].segments
    assert seg.name == "rows"
    assert seg.duration >= 0.015


def test_sync_function_returning_awaitable_is_timed_as_sync(records: Records) -> None:
    """Wrap-time flavour detection sees through functools.partial of a coroutine function."""

    async def co(x: int) -> int:
        await asyncio.sleep(0.02)
        return x

    wrapped = tasktrace.BackgroundTaskWrapper(functools.partial(co, 5), name="partial")
    assert asyncio.run(wrapped()) == 5
    assert records[0].duration >= 0.015


def test_wrappers_keep_no_per_call_state(records: Records) -> None:
    """A wrapper keeps no per-call state: interleaved calls record independent names."""

    @background_task(name=lambda x: f"n{x}")
    def job(x: int) -> int:
        return x

    for i in range(3):
        job(i)
    assert [r.name for r in records] == ["n0", "n1", "n2"]


def test_coroutine_cancelled_before_start_is_silent(
    records: Records, recwarn: pytest.WarningsRecorder
) -> None:
    """A wrapped coroutine closed or cancelled before its first step warns about nothing."""
    import gc

    @background_task()
    async def co() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.ensure_future(co())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    co().close()
    asyncio.run(main())
    gc.collect()
    assert [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)] == []
    assert records == []


def test_async_generator_clean_up_runs_inside_the_task(records: Records) -> None:
    """Code in an async generator's finally, run by aclose(), sees the task as current."""
    seen: List[Optional[str]] = []

    @background_task(name="agen")
    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
        finally:
            txn = tasktrace.current_transaction()
            seen.append(None if txn is None else txn.name)

    async def main() -> None:
        it = agen()
        await it.__anext__()
        await it.aclose()

    asyncio.run(main())
    assert seen == ["agen"]
