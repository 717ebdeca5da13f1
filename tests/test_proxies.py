"""Transparency of the wrapt-path proxies (callables that are not plain functions).

repr, inspect.signature, pickling and copying of a wrapped partial, callable instance,
builtin or curried object must be those of the plain object (issue 11).
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import math
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, List

import pytest
import wrapt

import tasktrace
from tasktrace import hooks
from tasktrace._wrapt_proxies import TaskTraceWrapper
from tasktrace.config import Settings, TargetSettings
from tasktrace.testing import capture_transactions

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
SRC = str(Path(__file__).resolve().parents[1] / "src")

# Written to a temporary module: pickle finds module-level objects by importing their module.
SOURCE = """
import functools
import importlib
from math import sqrt

import tasktrace


def job(a, b=1):
    return a + b


partial_job = functools.partial(job, 10)


class Handler:
    def __init__(self, factor=2):
        self.factor = factor

    def __call__(self, x, y=0):
        return x * self.factor + y


handler = Handler(3)


class Custom:
    # pickles by its own __reduce__, which passes its argument again
    def __init__(self, n):
        self.n = n
        self.calls = 0

    def __call__(self, x):
        return x + self.n

    def __reduce__(self):
        return (Custom, (self.n,))


custom = Custom(5)


class Named:
    # pickles by a bare name, without a __module__ to say where: pickle searches sys.modules
    def __init__(self):
        self.__module__ = None

    def __call__(self, x):
        return -x

    def __reduce__(self):
        return "named"


named = Named()


def _restore_by_name(module, name):
    return getattr(importlib.import_module(module), name)


def _restore_by_value(module, name, args):
    return Curry(getattr(importlib.import_module(module), name).func, *args)


class Curry:
    # As toolz.curry: by reference when found at its function's name, else by value
    # (which finds that function again through the object at its name).
    def __init__(self, func, *args):
        self.func = func
        self.args = args
        self.__qualname__ = func.__qualname__

    def __call__(self, *args):
        return self.func(*self.args, *args)

    def __reduce__(self):
        module, name = self.func.__module__, self.func.__qualname__
        if getattr(importlib.import_module(module), name, None) is self:
            return (_restore_by_name, (module, name))
        return (_restore_by_value, (module, name, self.args))


def add(a, b):
    return a + b


add = Curry(add)
add_one = Curry(add.func, 1)


def mul(a, b):
    return a * b


mul = tasktrace.background_task()(Curry(mul))
"""


@pytest.fixture(autouse=True)
def _fresh_hooks() -> Iterator[None]:
    hooks._reset_for_tests()
    yield
    hooks._reset_for_tests()


_counter = [0]


def _module(tmp_path: Path, *targets: str, source: str = SOURCE) -> ModuleType:
    """A fresh module written to ``tmp_path``, imported with ``targets`` as config targets."""
    _counter[0] += 1
    name = f"tt_proxies_{_counter[0]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    settings = Settings(
        background_tasks=tuple(
            TargetSettings(kind="background_task", function=f"{name}:{t}", source="test")
            for t in targets
            if not t.startswith("trace:")
        ),
        function_traces=tuple(
            TargetSettings(kind="function_trace", function=f"{name}:{t[6:]}", source="test")
            for t in targets
            if t.startswith("trace:")
        ),
    )
    hooks.install(settings)
    return importlib.import_module(name)


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` on sys.path; the modules written there leave sys.modules afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            if name.startswith("tt_proxies_"):
                del sys.modules[name]


def _call(w: Any, a: int, b: int = 1) -> Any:
    return a + b


class Handler:
    def __call__(self, a: int, b: int = 2) -> int:
        return a + b


class WithSignature:
    __signature__ = inspect.Signature(
        [inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )

    def __call__(self, *args: Any) -> None:
        pass


PLAIN_IDS = ["instance", "partial", "sqrt", "len", "__signature__", "class", "bound_method"]


def _plain_callables() -> List[Any]:
    return [
        Handler(),
        functools.partial(_call, None, 1),
        math.sqrt,
        len,
        WithSignature(),
        Handler,
        Handler().__call__,
    ]


# -- repr, str, format, class ----------------------------------------------------------


@pytest.mark.parametrize("plain", _plain_callables(), ids=PLAIN_IDS)
def test_repr_str_and_format_are_the_wrapped_objects(plain: Any) -> None:
    """repr() is the wrapped object's (wrapt's names the proxy); str and format too."""
    wrapped = tasktrace.BackgroundTaskWrapper(plain)
    assert type(wrapped) is TaskTraceWrapper
    assert repr(wrapped) == repr(plain)
    assert str(wrapped) == str(plain)
    assert format(wrapped, "") == format(plain, "")
    traced = tasktrace.FunctionTraceWrapper(wrapped)
    assert repr(traced) == repr(plain)


def test_format_spec_is_forwarded() -> None:
    """format() with a spec reaches the wrapped object's own __format__."""

    class Formatted(Handler):
        def __format__(self, spec: str) -> str:
            return f"formatted:{spec}"

    assert format(tasktrace.BackgroundTaskWrapper(Formatted()), "x>5") == "formatted:x>5"


def test_class_isinstance_and_type_are_wrapts() -> None:
    """__class__ and isinstance see the wrapped object; type() is the proxy's own type."""
    plain = Handler()
    wrapped = tasktrace.BackgroundTaskWrapper(plain)
    assert wrapped.__class__ is Handler
    assert isinstance(wrapped, Handler)
    assert type(wrapped) is TaskTraceWrapper
    assert isinstance(
        tasktrace.BackgroundTaskWrapper(functools.partial(_call, 1)), functools.partial
    )


def test_bound_proxy_repr_is_the_bound_objects() -> None:
    """A proxy around a descriptor, bound through a class, shows what binding gave."""

    class Holder:
        root = tasktrace.BackgroundTaskWrapper(staticmethod(math.sqrt))

    assert type(Holder.root) is not TaskTraceWrapper  # the bound proxy
    assert repr(Holder.root) == repr(Holder().root) == repr(math.sqrt)
    assert inspect.signature(Holder.root) == inspect.signature(math.sqrt)
    assert Holder().root(4.0) == 2.0


# -- inspect ---------------------------------------------------------------------------


@pytest.mark.parametrize("plain", _plain_callables(), ids=PLAIN_IDS)
def test_signature_is_the_wrapped_objects(plain: Any) -> None:
    """inspect.signature() of a proxy is the plain object's, never the proxy's __init__."""
    wrapped = tasktrace.BackgroundTaskWrapper(plain)
    assert inspect.signature(wrapped) == inspect.signature(plain)
    assert inspect.signature(tasktrace.FunctionTraceWrapper(wrapped)) == inspect.signature(plain)


@pytest.mark.parametrize(
    "plain",
    [functools.partial(_call, None, 1), math.sqrt, len, WithSignature(), Handler().__call__],
    ids=["partial", "sqrt", "len", "__signature__", "bound_method"],
)
def test_getfullargspec_is_the_wrapped_objects(plain: Any) -> None:
    """getfullargspec() works on a proxy and agrees with the plain object's."""
    wrapped = tasktrace.BackgroundTaskWrapper(plain)
    assert inspect.getfullargspec(wrapped) == inspect.getfullargspec(plain)


@pytest.mark.parametrize("plain", [Handler(), Handler], ids=["instance", "class"])
def test_getfullargspec_of_instances_and_classes_is_their_signature(plain: Any) -> None:
    """For a callable instance or a class, getfullargspec() of the proxy works and gives
    inspect.signature()'s arguments (the plain object's also lists ``self``)."""
    spec = inspect.getfullargspec(tasktrace.BackgroundTaskWrapper(plain))
    names = list(inspect.signature(plain).parameters)
    assert spec.args + spec.kwonlyargs == names


def test_object_without_signature_still_has_none() -> None:
    """A callable inspect cannot read stays unreadable (no proxy signature instead)."""
    plain = functools.partial(int, base=2)
    with pytest.raises(ValueError):
        inspect.signature(plain)
    with pytest.raises(ValueError):
        inspect.signature(tasktrace.BackgroundTaskWrapper(plain))


# -- pickling: config targets -------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_target_partial_pickles_by_value(on_path: Path, protocol: int) -> None:
    """A module-level partial installed as a target pickles as the plain partial does."""
    module = _module(on_path, "partial_job")
    assert type(module.partial_job) is TaskTraceWrapper
    restored = pickle.loads(pickle.dumps(module.partial_job, protocol))
    assert type(restored) is functools.partial
    assert restored.func is module.job and restored.args == (10,)
    assert restored(1) == 11


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_target_callable_instance_pickles_by_class_and_state(on_path: Path, protocol: int) -> None:
    """A callable instance installed as a target pickles by its class and state."""
    module = _module(on_path, "handler", "custom")
    restored = pickle.loads(pickle.dumps(module.handler, protocol))
    assert type(restored) is module.Handler and restored.factor == 3
    assert restored(2, 1) == 7
    own = pickle.loads(pickle.dumps(module.custom, protocol))
    assert type(own) is module.Custom and own.n == 5 and own(1) == 6


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_target_builtin_pickles_by_its_installed_location(on_path: Path, protocol: int) -> None:
    """``from math import sqrt`` wrapped as a target unpickles as that wrapper."""
    module = _module(on_path, "sqrt")
    assert type(module.sqrt) is TaskTraceWrapper
    assert pickle.loads(pickle.dumps(module.sqrt, protocol)) is module.sqrt


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_target_curried_function_pickles_as_toolz_would(on_path: Path, protocol: int) -> None:
    """A curried function found at its name pickles by that name (unpickling as the
    installed wrapper); a partially applied one, by value, as the plain one does."""
    module = _module(on_path, "add", "add_one")
    assert type(module.add) is TaskTraceWrapper
    assert pickle.loads(pickle.dumps(module.add, protocol)) is module.add
    restored = pickle.loads(pickle.dumps(module.add_one, protocol))
    assert restored is not module.add
    assert type(restored) is module.Curry and restored.args == (1,)
    assert restored(2) == 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_decorated_curried_function_pickles_by_name(on_path: Path, protocol: int) -> None:
    """@background_task() over a curried function, at its name, pickles by that name."""
    module = _module(on_path)
    assert type(module.mul) is TaskTraceWrapper
    assert pickle.loads(pickle.dumps(module.mul, protocol)) is module.mul


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_target_traced_and_task_pickles_as_the_outer_wrapper(on_path: Path, protocol: int) -> None:
    """A builtin or curried function that two targets wrap unpickles as what is installed."""
    module = _module(
        on_path, "sqrt", "trace:sqrt", "add", "trace:add", "partial_job", "trace:partial_job"
    )
    for name in ("sqrt", "add"):
        installed = getattr(module, name)
        assert installed.__tasktrace_kinds__ == {"background_task", "function_trace"}
        assert pickle.loads(pickle.dumps(installed, protocol)) is installed
    restored = pickle.loads(pickle.dumps(module.partial_job, protocol))
    assert type(restored) is functools.partial and restored(1) == 11


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_target_names_bound_to_one_object_share_its_wrapper(on_path: Path, protocol: int) -> None:
    """``root = sqrt`` and both names targets: one wrapper, found again by reference."""
    source = SOURCE + "\nroot = sqrt\n"
    module = _module(on_path, "sqrt", "root", source=source)
    assert module.root is module.sqrt
    assert pickle.loads(pickle.dumps(module.root, protocol)) is module.sqrt


def test_unpickled_installed_wrapper_still_records(on_path: Path) -> None:
    """A wrapper pickled by its installed location unpickles to the wrapper, which records."""
    module = _module(on_path, "sqrt", "add")
    with capture_transactions() as records:
        assert pickle.loads(pickle.dumps(module.sqrt))(16.0) == 4.0
        assert pickle.loads(pickle.dumps(module.add))(1, 2) == 3
    assert len(records) == 2


CHILD = """
import importlib
import pickle
import sys

from tasktrace import hooks
from tasktrace.config import Settings, TargetSettings

name, targets = sys.argv[1], sys.argv[2:]
entries = [TargetSettings(kind="background_task", function=f"{name}:{t}") for t in targets]
hooks.install(Settings(background_tasks=tuple(entries)))
module = importlib.import_module(name)
for key, (obj, args) in pickle.loads(sys.stdin.buffer.read()).items():
    print(key, type(obj).__name__, obj is getattr(module, key), obj(*args))
"""


@pytest.mark.integration
def test_pickles_load_in_a_process_with_the_same_targets(on_path: Path) -> None:
    """What a process pickles, another with the same config targets unpickles: names as
    the wrappers installed there, values as plain objects."""
    calls = {
        "sqrt": (16.0,),
        "partial_job": (1,),
        "handler": (1,),
        "add": (1, 2),
        "add_one": (1,),
        "named": (1,),
    }
    module = _module(on_path, *calls)
    data = pickle.dumps({t: (getattr(module, t), args) for t, args in calls.items()})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(on_path)])
    result = subprocess.run(
        [sys.executable, "-c", CHILD, module.__name__, *calls],
        input=data,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        "sqrt TaskTraceWrapper True 4.0",
        "partial_job partial False 11",
        "handler Handler False 3",
        "add TaskTraceWrapper True 3",
        "add_one Curry False 2",
        "named TaskTraceWrapper True -1",
    ]


# -- pickling: the direct API ----------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrap_helper_partial_and_builtin(
    on_path: Path, protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wrap_background_task() records the location as a config target does."""
    module = _module(on_path)
    tasktrace.wrap_background_task(module, "partial_job")
    restored = pickle.loads(pickle.dumps(module.partial_job, protocol))
    assert type(restored) is functools.partial and restored(2) == 12
    monkeypatch.setattr(math, "sqrt", math.sqrt)  # undone after the test
    wrapped = tasktrace.wrap_background_task("math", "sqrt")
    assert math.sqrt is wrapped and type(wrapped) is TaskTraceWrapper
    assert pickle.loads(pickle.dumps(math.sqrt, protocol)) is wrapped


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrapper_not_installed_pickles_as_the_plain_object(on_path: Path, protocol: int) -> None:
    """A proxy held, not installed anywhere, pickles exactly as the object it wraps."""
    module = _module(on_path)
    partial = pickle.loads(
        pickle.dumps(tasktrace.BackgroundTaskWrapper(module.partial_job), protocol)
    )
    assert type(partial) is functools.partial and partial(5) == 15
    handler = pickle.loads(pickle.dumps(tasktrace.BackgroundTaskWrapper(module.handler), protocol))
    assert type(handler) is module.Handler and handler.factor == 3
    assert (
        pickle.loads(pickle.dumps(tasktrace.BackgroundTaskWrapper(math.sqrt), protocol))
        is math.sqrt
    )
    curried = pickle.loads(pickle.dumps(tasktrace.BackgroundTaskWrapper(module.add_one), protocol))
    assert type(curried) is module.Curry and curried(1) == 2
    named = tasktrace.BackgroundTaskWrapper(module.named)
    assert pickle.loads(pickle.dumps(named, protocol)) is module.named
    traced = tasktrace.FunctionTraceWrapper(tasktrace.BackgroundTaskWrapper(module.custom))
    own = pickle.loads(pickle.dumps(traced, protocol))
    assert type(own) is module.Custom and own.n == 5


def test_what_does_not_pickle_plainly_still_refuses() -> None:
    """Local objects and other libraries' proxies refuse, with a TypeError from the proxy."""

    class Local:
        def __call__(self) -> None:
            pass

    for plain in (Local(), functools.partial(lambda: None)):
        with pytest.raises((TypeError, pickle.PicklingError, AttributeError)) as plain_error:
            pickle.dumps(plain)
        with pytest.raises((TypeError, pickle.PicklingError, AttributeError)) as wrapped_error:
            pickle.dumps(tasktrace.BackgroundTaskWrapper(plain))
        assert type(wrapped_error.value) is type(plain_error.value)
    proxy = wrapt.ObjectProxy(Handler())
    with pytest.raises(NotImplementedError):
        pickle.dumps(proxy)
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(tasktrace.BackgroundTaskWrapper(proxy))

    class Missing(Handler):
        def __reduce__(self) -> str:
            return "no_such_name"  # pickle looks it up in this module, and fails

    with pytest.raises(pickle.PicklingError):
        pickle.dumps(Missing())
    with pytest.raises(TypeError, match=r"it is not found as test_proxies\.no_such_name"):
        pickle.dumps(tasktrace.BackgroundTaskWrapper(Missing()))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_builtin_pickles_by_its_own_name_when_not_installed(on_path: Path, protocol: int) -> None:
    """A proxy of a builtin that is not installed anywhere pickles as the builtin."""
    module = _module(on_path)
    wrapper = tasktrace.BackgroundTaskWrapper(module.sqrt)
    assert pickle.loads(pickle.dumps(wrapper, protocol)) is math.sqrt


# -- copying ---------------------------------------------------------------------------


def test_copy_of_what_copies_as_itself_is_the_proxy() -> None:
    """copy and deepcopy of a wrapper of what copies as itself (functions, classes) give the wrapper."""
    for plain in (math.sqrt, Handler):
        wrapped = tasktrace.BackgroundTaskWrapper(plain)
        assert copy.copy(wrapped) is wrapped
        assert copy.deepcopy(wrapped) is wrapped
    proxied = tasktrace.BackgroundTaskWrapper(wrapt.ObjectProxy(Handler()))
    assert copy.copy(proxied) is proxied  # wrapt refuses; as a function would, itself


def test_copy_of_a_callable_instance_is_a_proxy_of_its_copy(on_path: Path) -> None:
    """A callable instance copies plainly as a new instance: so does its proxy, still
    recording; deepcopy copies its state, copy shares it."""
    module = _module(on_path, "handler", "partial_job")
    module.handler.tags = ["a"]
    shallow = copy.copy(module.handler)
    deep = copy.deepcopy(module.handler)
    for copied in (shallow, deep):
        assert copied is not module.handler and type(copied) is TaskTraceWrapper
        assert copied.__wrapped__ is not module.handler.__wrapped__
        assert isinstance(copied, module.Handler) and copied.factor == 3
    assert shallow.tags is module.handler.tags
    assert deep.tags == ["a"] and deep.tags is not module.handler.tags
    partial = copy.copy(module.partial_job)
    assert partial is not module.partial_job and partial.args == (10,)
    holder = copy.deepcopy({"h": module.handler, "again": module.handler})
    assert holder["h"] is holder["again"]
    with capture_transactions() as records:
        assert shallow(1) == 3 and deep(2) == 6 and partial(1) == 11
    assert len(records) == 3


def test_copy_of_an_object_that_copies_by_name_is_what_is_there(on_path: Path) -> None:
    """A curried function copies by finding itself at its name: there is the proxy now."""
    module = _module(on_path, "add")
    assert copy.copy(module.add) is module.add
    assert copy.deepcopy(module.add) is module.add
    assert copy.copy(module.mul) is module.mul
