"""Tests for tasktrace.api: the decorator, wrapper and patch-in-place forms of tasks and traces."""

from __future__ import annotations

import sys
import textwrap
import types
from collections.abc import Iterator
from typing import Any, Callable, List

import pytest

import tasktrace
from tasktrace import (
    BackgroundTaskWrapper,
    FunctionTraceWrapper,
    background_task,
    function_trace,
    wrap_background_task,
    wrap_function_trace,
)
from tasktrace._state import STATE
from tasktrace.exceptions import TargetError, TaskTraceError
from tasktrace.records import TransactionRecord

Records = List[TransactionRecord]

_MODULE_SOURCE = """
def job(x):
    return x + 1

def traced(x):
    return x * 10

class Worker:
    def run(self, x):
        return ("run", x)

    @classmethod
    def build(cls, x):
        return ("build", cls.__name__, x)

    @staticmethod
    def helper(x):
        return ("helper", x)

    class Inner:
        def go(self):
            return "go"

class SubWorker(Worker):
    pass
"""


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A fresh importable module ``tt_jobs`` for each test, so patches never leak."""
    module = types.ModuleType("tt_jobs")
    exec(compile(textwrap.dedent(_MODULE_SOURCE), "tt_jobs.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "tt_jobs", module)
    yield module


def _plain(x: int) -> int:
    return x


# -- background_task / BackgroundTaskWrapper ------------------------------------------------


def test_background_task_records_one_transaction_with_default_name_and_group(
    records: Records,
) -> None:
    """A decorated call is one background transaction named module:qualname, group Function."""

    @background_task()
    def job(x: int) -> int:
        return x * 2

    assert job(21) == 42
    assert len(records) == 1
    rec = records[0]
    qualname = (
        f"{test_background_task_records_one_transaction_with_default_name_and_group.__name__}"
    )
    assert rec.name == f"{__name__}:{qualname}.<locals>.job"
    assert rec.group == "Function"
    assert rec.background is True
    assert rec.errors == ()


def test_bare_background_task_decorator(records: Records) -> None:
    """``@background_task`` without parentheses works like ``@background_task()``."""

    @background_task
    def job() -> str:
        return "ok"

    assert job() == "ok"
    assert [r.name for r in records] == [tasktrace.callable_name(job)]


def test_fixed_name_group_and_application_string(records: Records) -> None:
    """name, group and an application name string are used as given."""

    @background_task(application="billing", name="Send invoices", group="Task")
    def job() -> None:
        pass

    job()
    assert [(r.app, r.name, r.group) for r in records] == [("billing", "Send invoices", "Task")]


def test_application_handle_is_accepted(records: Records) -> None:
    """application= accepts a handle from tasktrace.application()."""

    @background_task(application=tasktrace.application("batch"))
    def job() -> None:
        pass

    job()
    assert records[0].app == "batch"


def test_default_application_handle_uses_configured_name(records: Records) -> None:
    """A handle for the default app (name None) reports under the configured app name."""

    @background_task(application=tasktrace.application())
    def job() -> None:
        pass

    job()
    assert records[0].app == "Python Application"


def test_invalid_application_type_is_rejected() -> None:
    """An application= that is neither None, a str nor a handle fails at decoration time."""
    with pytest.raises(TypeError):
        BackgroundTaskWrapper(_plain, application=42)


def test_callable_name_and_group_are_computed_per_call(records: Records) -> None:
    """Callable name and group are called with each call's arguments."""

    @background_task(name=lambda x, y=0: f"job-{x}-{y}", group=lambda x, y=0: f"g{x}")
    def job(x: int, y: int = 0) -> int:
        return x + y

    assert job(1) == 1
    assert job(2, y=5) == 7
    assert [(r.name, r.group) for r in records] == [("job-1-0", "g1"), ("job-2-5", "g2")]


def test_callable_name_gets_instance_first_for_bound_methods(records: Records) -> None:
    """For a method the name callable receives the instance, then the call's arguments."""
    seen: List[Any] = []

    class Exporter:
        @background_task(name=lambda self, x: seen.append((self, x)) or f"export-{x}")
        def run(self, x: int) -> int:
            return x

    exporter = Exporter()
    assert exporter.run(3) == 3
    assert Exporter.run(exporter, 4) == 4
    assert seen == [(exporter, 3), (exporter, 4)]
    assert [r.name for r in records] == ["export-3", "export-4"]


def test_failing_name_callable_falls_back_to_default(records: Records) -> None:
    """A name/group callable that raises does not break the call: defaults are used."""

    def bad(*args: Any) -> str:
        raise RuntimeError("broken namer")

    @background_task(name=bad, group=bad)
    def job() -> int:
        return 7

    assert job() == 7
    assert [(r.name, r.group) for r in records] == [(tasktrace.callable_name(job), "Function")]


def test_background_task_wrapper_wraps_a_held_callable(records: Records) -> None:
    """BackgroundTaskWrapper(f) returns a callable recording a task per call."""
    wrapped = BackgroundTaskWrapper(_plain, name="held", group="Task")
    assert wrapped(5) == 5
    assert _plain(6) == 6  # the original is untouched
    assert [(r.name, r.group) for r in records] == [("held", "Task")]


def test_double_wrapping_returns_the_first_wrapper(records: Records) -> None:
    """Wrapping an already wrapped task returns it unchanged and records once per call."""
    first = BackgroundTaskWrapper(_plain)
    assert BackgroundTaskWrapper(first) is first
    assert background_task(name="other")(first) is first
    first(1)
    assert len(records) == 1


def test_task_wrapped_around_trace_is_still_wrapped_once(records: Records) -> None:
    """A task wrapper over a trace wrapper is new; a second task wrapper over it is not."""
    traced = FunctionTraceWrapper(_plain)
    task = BackgroundTaskWrapper(traced)
    assert task is not traced
    assert BackgroundTaskWrapper(task) is task
    task(1)
    assert len(records) == 1
    assert [s.name for s in records[0].segments] == [tasktrace.callable_name(_plain)]


def test_agent_disabled_runs_function_and_records_nothing(records: Records) -> None:
    """With STATE.enabled False the decorated function runs unchanged and nothing is recorded."""
    calls: List[int] = []

    @background_task()
    def job(x: int) -> int:
        calls.append(x)
        assert tasktrace.current_transaction() is None
        return x * 3

    STATE.enabled = False
    assert job(2) == 6
    assert calls == [2]
    assert records == []


def test_agent_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKTRACE_ENABLED=false (read when the state is built) disables recording."""
    monkeypatch.setenv("TASKTRACE_ENABLED", "false")
    STATE._reset_for_tests()
    assert STATE.enabled is False
    from tasktrace.testing import capture_transactions

    with capture_transactions() as captured:
        assert BackgroundTaskWrapper(_plain)(9) == 9
    assert captured == []


# -- wrap_background_task ------------------------------------------------------------------


def test_wrap_background_task_patches_module_function(
    jobs: types.ModuleType, records: Records
) -> None:
    """wrap_background_task(module, "job") patches the function; default name module:path."""
    wrapper = wrap_background_task(jobs, "job")
    assert jobs.job is wrapper
    assert jobs.job(1) == 2
    assert [(r.name, r.group) for r in records] == [("tt_jobs:job", "Function")]


def test_wrap_background_task_accepts_dotted_module_name(
    jobs: types.ModuleType, records: Records
) -> None:
    """The module may be given as a dotted name; it is imported (or found) by name."""
    wrap_background_task("tt_jobs", "job", application="app", name="N", group="G")
    jobs.job(1)
    assert [(r.app, r.name, r.group) for r in records] == [("app", "N", "G")]


def test_wrap_background_task_imports_a_module_by_name(records: Records) -> None:
    """A dotted name of a module not yet wrapped is imported and patched."""
    import _helpers

    original = _helpers.plain
    try:
        wrap_background_task("_helpers", "plain")
        assert _helpers.plain(1) == 2
    finally:
        _helpers.plain = original
    assert [r.name for r in records] == ["_helpers:plain"]


def test_wrap_background_task_twice_records_once_per_call(
    jobs: types.ModuleType, records: Records
) -> None:
    """Patching the same target twice leaves one wrapper: one transaction per call."""
    first = wrap_background_task(jobs, "job")
    second = wrap_background_task(jobs, "job")
    assert second is first
    assert jobs.job is first
    jobs.job(1)
    assert len(records) == 1
    assert records[0].segments == ()


@pytest.mark.parametrize(
    ("path", "call", "expected"),
    [
        ("Worker.run", lambda m: m.Worker().run(1), ("run", 1)),
        ("Worker.build", lambda m: m.Worker.build(2), ("build", "Worker", 2)),
        ("Worker.build", lambda m: m.Worker().build(2), ("build", "Worker", 2)),
        ("Worker.helper", lambda m: m.Worker.helper(3), ("helper", 3)),
        ("Worker.helper", lambda m: m.Worker().helper(3), ("helper", 3)),
        ("Worker.Inner.go", lambda m: m.Worker.Inner().go(), "go"),
    ],
)
def test_wrap_background_task_object_paths(
    jobs: types.ModuleType,
    records: Records,
    path: str,
    call: Callable[[types.ModuleType], Any],
    expected: Any,
) -> None:
    """Class.method paths keep method, classmethod and staticmethod binding when patched."""
    wrap_background_task(jobs, path)
    assert call(jobs) == expected
    assert [r.name for r in records] == [f"tt_jobs:{path}"]


def test_wrap_background_task_classmethod_stays_a_classmethod(jobs: types.ModuleType) -> None:
    """The raw classmethod descriptor is wrapped, so binding to the class survives."""
    wrap_background_task(jobs, "Worker.build")
    assert jobs.Worker.build(1) == ("build", "Worker", 1)
    assert jobs.SubWorker.build(1) == ("build", "SubWorker", 1)


def test_wrap_background_task_inherited_method_patches_subclass_only(
    jobs: types.ModuleType, records: Records
) -> None:
    """A method inherited from a base class is patched on the named subclass only."""
    wrap_background_task(jobs, "SubWorker.run")
    assert jobs.SubWorker().run(1) == ("run", 1)
    assert jobs.Worker().run(1) == ("run", 1)
    assert [r.name for r in records] == ["tt_jobs:SubWorker.run"]


def test_wrap_background_task_callable_name_gets_instance(
    jobs: types.ModuleType, records: Records
) -> None:
    """A callable name given to wrap_background_task receives the instance first."""
    wrap_background_task(jobs, "Worker.run", name=lambda self, x: f"{type(self).__name__}/{x}")
    jobs.Worker().run(7)
    assert [r.name for r in records] == ["Worker/7"]


@pytest.mark.parametrize(
    ("module", "path", "fragment"),
    [
        ("tt_no_such_module", "job", "cannot import"),
        ("tt_jobs", "jbo", "did you mean 'job'"),
        ("tt_jobs", "Worker.rnu", "did you mean 'run'"),
        ("tt_jobs", "Wroker.run", "did you mean 'Worker'"),
        ("tt_jobs", "", "invalid object path"),
        ("tt_jobs", "Worker..run", "invalid object path"),
    ],
)
def test_wrap_background_task_bad_target(
    jobs: types.ModuleType, module: str, path: str, fragment: str
) -> None:
    """A missing module or attribute raises TargetError (a TaskTraceError) with a hint."""
    with pytest.raises(TargetError) as info:
        wrap_background_task(module, path)
    assert isinstance(info.value, TaskTraceError)
    assert fragment in str(info.value)


# -- function_trace family -------------------------------------------------------------------


def test_function_trace_records_a_segment_in_the_current_task(records: Records) -> None:
    """A traced call inside a task is a segment with its name and group."""

    @function_trace(name="query", group="Database")
    def query() -> str:
        return "rows"

    @background_task(name="job")
    def job() -> str:
        return query()

    assert job() == "rows"
    (rec,) = records
    assert [(s.name, s.group, s.parent) for s in rec.segments] == [("query", "Database", -1)]


def test_bare_function_trace_decorator(records: Records) -> None:
    """``@function_trace`` without parentheses works, named after the function."""

    @function_trace
    def step() -> int:
        return 1

    with tasktrace.BackgroundTask(name="job"):
        assert step() == 1
    assert [s.name for s in records[0].segments] == [tasktrace.callable_name(step)]


def test_function_trace_callable_name_is_not_taken_for_bare_use(records: Records) -> None:
    """``function_trace(lambda ...)``: the lambda is a per-call name, not the decorated target."""

    @function_trace(lambda x: f"step-{x}")
    def step(x: int) -> int:
        return x

    @function_trace(name=lambda x: f"named-{x}", group=lambda x: f"G{x}")
    def other(x: int) -> int:
        return x

    with tasktrace.BackgroundTask(name="job"):
        assert step(3) == 3
        assert other(4) == 4
    assert [(s.name, s.group) for s in records[0].segments] == [
        ("step-3", "Function"),
        ("named-4", "G4"),
    ]


def test_function_trace_outside_transaction_is_a_no_op(records: Records) -> None:
    """Outside a transaction the traced function still runs and nothing is recorded."""
    calls: List[int] = []

    @function_trace()
    def step(x: int) -> int:
        calls.append(x)
        return x + 1

    assert step(1) == 2
    assert calls == [1]
    assert records == []


def test_function_trace_wrapper_double_wrap_is_a_no_op() -> None:
    """FunctionTraceWrapper(FunctionTraceWrapper(f)) is the first wrapper."""
    first = FunctionTraceWrapper(_plain)
    assert FunctionTraceWrapper(first) is first
    assert function_trace("x")(first) is first


def test_wrap_function_trace_patches_in_place(jobs: types.ModuleType, records: Records) -> None:
    """wrap_function_trace(module, path) patches the target; default name module:path."""
    wrapper = wrap_function_trace(jobs, "traced")
    assert wrap_function_trace("tt_jobs", "traced") is wrapper
    wrap_function_trace(jobs, "Worker.helper", name="helper", group="Custom")
    with tasktrace.BackgroundTask(name="job"):
        assert jobs.traced(2) == 20
        assert jobs.Worker.helper(1) == ("helper", 1)
    assert [(s.name, s.group) for s in records[0].segments] == [
        ("tt_jobs:traced", "Function"),
        ("helper", "Custom"),
    ]


def test_wrap_function_trace_bad_target() -> None:
    """wrap_function_trace raises TargetError for a missing attribute."""
    with pytest.raises(TargetError):
        wrap_function_trace("tasktrace", "no_such_thing")


@pytest.mark.integration
def test_agent_disabled_by_environment_in_a_subprocess(tmp_path: Any) -> None:
    """In a process started with TASKTRACE_ENABLED=false decorated code runs, unrecorded."""
    import os
    import subprocess

    script = textwrap.dedent(
        """
        import tasktrace
        from tasktrace.testing import capture_transactions

        @tasktrace.background_task()
        def job(x):
            return (x * 2, tasktrace.current_transaction())

        with capture_transactions() as records:
            print(job(21), len(records))
        """
    )
    env = {**os.environ, "TASKTRACE_ENABLED": "false"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "(42, None) 0"


def test_bare_decorators_over_classmethod_and_staticmethod(records: Records) -> None:
    """Bare @background_task / @function_trace also accept classmethod and staticmethod."""

    class Svc:
        @background_task
        @classmethod
        def build(cls) -> type:
            return cls

        @background_task
        @staticmethod
        def helper() -> int:
            return 1

        @function_trace
        @classmethod
        def traced(cls) -> type:
            return cls

    assert Svc.build() is Svc
    assert Svc.helper() == 1
    with tasktrace.BackgroundTask(name="t"):
        assert Svc.traced() is Svc
    assert [r.name for r in records] == [
        tasktrace.callable_name(Svc.build),
        tasktrace.callable_name(Svc.helper),
        "t",
    ]
    assert [s.name for s in records[2].segments] == [tasktrace.callable_name(Svc.traced)]
