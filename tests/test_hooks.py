"""Tests for tasktrace.hooks: the post-import finder, targets and ``__main__`` targets."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.resources
import logging
import os
import pkgutil
import runpy
import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, List

import pytest

from tasktrace import hooks
from tasktrace.config import Settings, TargetSettings
from tasktrace.exceptions import TargetError
from tasktrace.testing import capture_transactions

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def _fresh_hooks() -> Iterator[None]:
    """Every test starts and ends without hooks, targets or our finder."""
    hooks._reset_for_tests()
    yield
    hooks._reset_for_tests()


class ModuleDir:
    """A temporary directory on sys.path to write modules into; cleans sys.modules."""

    counter = 0

    def __init__(self, root: Path) -> None:
        self.root = root
        ModuleDir.counter += 1
        self.prefix = f"tt_hooks_{ModuleDir.counter}_"

    def name(self, base: str) -> str:
        """A module name unique to this test (so no earlier import can interfere)."""
        return self.prefix + base

    def write(self, relative: str, source: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return path


@pytest.fixture
def mods(tmp_path: Path) -> Iterator[ModuleDir]:
    """A ModuleDir on sys.path; its modules are removed from sys.modules afterwards."""
    directory = ModuleDir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield directory
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith(directory.prefix)]:
            del sys.modules[name]
        importlib.invalidate_caches()


def _recorder() -> tuple[List[ModuleType], Callable[[ModuleType], None]]:
    seen: List[ModuleType] = []
    return seen, seen.append


def _target(function: str, kind: str = "background_task", **kwargs: Any) -> TargetSettings:
    return TargetSettings(kind=kind, function=function, source="test.toml: entry[1]", **kwargs)


def _settings(*targets: TargetSettings, strict: bool = False) -> Settings:
    tasks = tuple(t for t in targets if t.kind == "background_task")
    traces = tuple(t for t in targets if t.kind == "function_trace")
    return Settings(background_tasks=tasks, function_traces=traces, strict=strict)


JOBS = """
import time

def send_invoices():
    return "sent"

def send_reminders():
    return "reminded"

def _private():
    return "private"

class Exporter:
    def run(self):
        return "ran"

    @classmethod
    def create(cls):
        return cls

    @staticmethod
    def helper(x):
        return x * 2

    class Inner:
        def go(self):
            return "went"

class Batch:
    def run(self):
        return "batch"
"""


# ------------------------------------------------------------------ the raw hook API


def test_hook_runs_after_lazy_import(mods: ModuleDir) -> None:
    """A hook for a module not yet imported runs once, after its code has executed."""
    name = mods.name("lazy")
    mods.write(f"{name}.py", "VALUE = 42\n")
    seen: List[Any] = []
    hooks.register_post_import_hook(name, lambda m: seen.append(m.VALUE))
    assert seen == []
    module = importlib.import_module(name)
    assert seen == [42]
    importlib.import_module(name)
    assert seen == [42]
    assert module.__name__ == name


def test_hook_runs_at_once_for_imported_module(mods: ModuleDir) -> None:
    """A hook for a module already in sys.modules runs at registration."""
    name = mods.name("already")
    mods.write(f"{name}.py", "X = 1\n")
    module = importlib.import_module(name)
    seen, callback = _recorder()
    hooks.register_post_import_hook(name, callback)
    assert seen == [module]


def test_finder_is_first_and_ignores_other_names() -> None:
    """The finder sits at sys.meta_path[0] and answers None for unregistered names."""
    hooks.register_post_import_hook("tt_not_a_real_module_xyz", lambda m: None)
    finder = sys.meta_path[0]
    assert isinstance(finder, hooks._PostImportFinder)
    assert finder.find_spec("json") is None
    assert finder.find_spec("tt_not_a_real_module_xyz") is None  # registered, not found


def test_non_target_import_is_untouched(mods: ModuleDir) -> None:
    """Modules without hooks are loaded by their own loader, as without tasktrace."""
    hooks.register_post_import_hook(mods.name("other"), lambda m: None)
    name = mods.name("plain")
    mods.write(f"{name}.py", "X = 1\n")
    module = importlib.import_module(name)
    assert type(module.__loader__) is importlib.machinery.SourceFileLoader
    assert type(module.__spec__.loader) is importlib.machinery.SourceFileLoader


def test_hooked_module_keeps_its_real_loader(mods: ModuleDir) -> None:
    """A hooked module sees its real loader, during and after its execution."""
    name = mods.name("loader")
    mods.write(f"{name}.py", "LOADER_TYPE = type(__loader__).__name__\n")
    hooks.register_post_import_hook(name, lambda m: None)
    module = importlib.import_module(name)
    assert module.LOADER_TYPE == "SourceFileLoader"
    assert type(module.__loader__) is importlib.machinery.SourceFileLoader
    assert type(module.__spec__.loader) is importlib.machinery.SourceFileLoader


def test_reload_runs_hooks_again(mods: ModuleDir) -> None:
    """importlib.reload re-runs the hooks once, on the re-executed module."""
    name = mods.name("reloaded")
    mods.write(f"{name}.py", "import itertools\nTOKEN = object()\n")
    tokens: List[object] = []
    hooks.register_post_import_hook(name, lambda m: tokens.append(m.TOKEN))
    module = importlib.import_module(name)
    first = module.TOKEN
    importlib.reload(module)
    assert tokens == [first, module.TOKEN]
    assert module.TOKEN is not first


def test_concurrent_imports_run_hook_once(mods: ModuleDir) -> None:
    """Several threads importing a hooked module at once run its hook exactly once."""
    name = mods.name("concurrent")
    mods.write(f"{name}.py", "import time\ntime.sleep(0.05)\nREADY = True\n")
    calls: List[bool] = []
    hooks.register_post_import_hook(name, lambda m: calls.append(m.READY))
    barrier = threading.Barrier(8)
    errors: List[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            assert importlib.import_module(name).READY
        except BaseException as exc:  # pragma: no cover - reported below  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert calls == [True]


def test_hook_registered_during_import_runs_after_it(mods: ModuleDir) -> None:
    """A hook registered while its module executes runs once, on the finished module."""
    name = mods.name("selfreg")
    mods.write(
        f"{name}.py",
        f"""
        from tasktrace import hooks
        import builtins
        hooks.register_post_import_hook({name!r}, builtins._tt_seen.append)
        DONE = True
        """,
    )
    hooks.register_post_import_hook(name, lambda m: None)
    seen: List[ModuleType] = []
    import builtins

    builtins._tt_seen = seen  # type: ignore[attr-defined]
    try:
        module = importlib.import_module(name)
    finally:
        del builtins._tt_seen  # type: ignore[attr-defined]
    assert seen == [module] and module.DONE


def test_module_replacing_itself_is_hooked(mods: ModuleDir) -> None:
    """When a module replaces itself in sys.modules, the hook gets the replacement."""
    name = mods.name("replacer")
    mods.write(
        f"{name}.py",
        f"""
        import sys, types
        replacement = types.ModuleType({name!r})
        replacement.REPLACED = True
        sys.modules[{name!r}] = replacement
        """,
    )
    seen, callback = _recorder()
    hooks.register_post_import_hook(name, callback)
    module = importlib.import_module(name)
    assert seen == [module] and module.REPLACED


def test_failing_hook_is_logged_not_raised(
    mods: ModuleDir, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook raising an ordinary exception is logged; the import still succeeds."""
    name = mods.name("failing")
    mods.write(f"{name}.py", "X = 1\n")

    def broken(module: ModuleType) -> None:
        raise RuntimeError("boom")

    hooks.register_post_import_hook(name, broken)
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        assert importlib.import_module(name).X == 1
    assert "post-import hook" in caplog.text and "boom" in caplog.text


def test_namespace_package_still_works(mods: ModuleDir) -> None:
    """A hooked namespace package imports, keeps __path__ and importlib.resources works."""
    name = mods.name("ns")
    mods.write(f"{name}/sub.py", "VALUE = 'sub'\n")
    mods.write(f"{name}/data.txt", "namespace data")
    seen, callback = _recorder()
    hooks.register_post_import_hook(name, callback)
    package = importlib.import_module(name)
    assert seen == [package]
    assert package.__file__ is None
    assert list(package.__path__) == [str(mods.root / name)]
    assert importlib.import_module(f"{name}.sub").VALUE == "sub"
    if sys.version_info >= (3, 10):  # importlib.resources knows namespace packages from 3.10
        files = importlib.resources.files(package)
        assert files.joinpath("data.txt").read_text() == "namespace data"


def test_zip_import_still_works(mods: ModuleDir, tmp_path: Path) -> None:
    """A hooked package inside a zip file imports, and its data can be read."""
    name = mods.name("zipped")
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "def work():\n    return 'zip'\n")
        zf.writestr(f"{name}/data.txt", "zip data")
    sys.path.insert(0, str(archive))
    try:
        seen, callback = _recorder()
        hooks.register_post_import_hook(name, callback)
        package = importlib.import_module(name)
        assert seen == [package] and package.work() == "zip"
        assert type(package.__loader__).__name__ == "zipimporter"
        assert pkgutil.get_data(name, "data.txt") == b"zip data"
        assert importlib.resources.files(package).joinpath("data.txt").read_text() == "zip data"
    finally:
        sys.path.remove(str(archive))


def test_resources_of_regular_package(mods: ModuleDir) -> None:
    """importlib.resources works on a hooked package, also while it is importing."""
    name = mods.name("respkg")
    mods.write(
        f"{name}/__init__.py",
        "import importlib.resources\n"
        "AT_IMPORT = importlib.resources.files(__name__).joinpath('d.txt').read_text()\n",
    )
    mods.write(f"{name}/d.txt", "resource")
    hooks.register_post_import_hook(name, lambda m: None)
    package = importlib.import_module(name)
    assert package.AT_IMPORT == "resource"
    assert importlib.resources.files(package).joinpath("d.txt").read_text() == "resource"


def test_run_module_of_hooked_module(mods: ModuleDir) -> None:
    """runpy (python -m) can run a hooked module; its code comes through our loader."""
    name = mods.name("runnable")
    mods.write(f"{name}.py", "RESULT = __name__\n")
    seen, callback = _recorder()
    hooks.register_post_import_hook(name, callback)
    namespace = runpy.run_module(name, run_name="__run__")
    assert namespace["RESULT"] == "__run__"
    assert seen == []  # it ran as a script; the module itself was not imported


# ---------------------------------------------------------------------- targets


def test_install_wraps_lazily_imported_target(mods: ModuleDir) -> None:
    """install() wraps a target when its module is imported; calls become transactions."""
    name = mods.name("jobs")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:send_invoices", name="Send", group="Task")))
    module = importlib.import_module(name)
    assert hasattr(module.send_invoices, "__wrapped__")
    with capture_transactions() as records:
        assert module.send_invoices() == "sent"
        assert module.send_reminders() == "reminded"
    assert [(r.name, r.group) for r in records] == [("Send", "Task")]
    (outcome,) = hooks.applied()
    assert (outcome.module, outcome.path, outcome.ok) == (name, "send_invoices", True)


def test_install_wraps_already_imported_target(mods: ModuleDir) -> None:
    """A target whose module is already imported is wrapped by install() itself."""
    name = mods.name("jobs_now")
    mods.write(f"{name}.py", JOBS)
    module = importlib.import_module(name)
    hooks.install(_settings(_target(f"{name}:Exporter.run")))
    with capture_transactions() as records:
        assert module.Exporter().run() == "ran"
    assert [r.name for r in records] == [f"{name}:Exporter.run"]


def test_function_trace_target(mods: ModuleDir) -> None:
    """A function_trace target records a segment inside a background task target."""
    name = mods.name("traced")
    mods.write(f"{name}.py", "def inner():\n    return 1\n\ndef outer():\n    return inner()\n")
    hooks.install(
        _settings(_target(f"{name}:outer"), _target(f"{name}:inner", kind="function_trace"))
    )
    module = importlib.import_module(name)
    with capture_transactions() as records:
        module.outer()
    (record,) = records
    assert [s.name for s in record.segments] == [f"{name}:inner"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("send_*", ["send_invoices", "send_reminders"]),
        ("send_?nvoices", ["send_invoices"]),
        ("[BE]*.run", ["Exporter.run", "Batch.run"]),
        ("Exporter.*", ["Exporter.run", "Exporter.create", "Exporter.helper"]),
        ("Exporter.[ch]*", ["Exporter.create", "Exporter.helper"]),
        ("Exporter.Inner.go", ["Exporter.Inner.go"]),
        ("*.Inner.g?", ["Exporter.Inner.go"]),
    ],
)
def test_glob_targets(mods: ModuleDir, pattern: str, expected: List[str]) -> None:
    """Glob targets wrap every function and method they match (classmethods and
    staticmethods too), inside nested classes, never a class itself."""
    name = mods.name("globbed")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:{pattern}")))
    importlib.import_module(name)
    assert [a.path for a in hooks.applied()] == expected
    assert all(a.ok for a in hooks.applied())


def test_descriptors_keep_working_when_wrapped(mods: ModuleDir) -> None:
    """Wrapped classmethods and staticmethods still bind correctly and are recorded."""
    name = mods.name("descr")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:Exporter.create"), _target(f"{name}:Exporter.helper")))
    module = importlib.import_module(name)
    with capture_transactions() as records:
        assert module.Exporter.create() is module.Exporter
        assert module.Exporter().helper(4) == 8
        assert module.Exporter.helper(1) == 2
    assert len(records) == 3


def test_reload_rewraps_once(mods: ModuleDir) -> None:
    """After reload the fresh function is wrapped again, and only once."""
    name = mods.name("reload_jobs")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:send_invoices")))
    module = importlib.import_module(name)
    first = module.send_invoices
    importlib.reload(module)
    second = module.send_invoices
    assert second is not first
    assert hasattr(second, "__wrapped__")
    assert not hasattr(second.__wrapped__, "__wrapped__")  # not a wrapper of a wrapper
    with capture_transactions() as records:
        module.send_invoices()
    assert len(records) == 1
    assert len(hooks.applied()) == 1  # the reload replaced the entry


def test_install_is_idempotent(mods: ModuleDir) -> None:
    """Installing the same settings twice registers each target once."""
    name = mods.name("idem")
    mods.write(f"{name}.py", JOBS)
    settings = _settings(_target(f"{name}:send_invoices"))
    hooks.install(settings)
    hooks.install(settings)
    module = importlib.import_module(name)
    wrapped = module.send_invoices
    assert hasattr(wrapped, "__wrapped__")
    assert not hasattr(wrapped.__wrapped__, "__wrapped__")  # wrapped once, not twice
    with capture_transactions() as records:
        assert module.send_invoices() == "sent"
    assert len(records) == 1


def test_disabled_targets_and_settings(mods: ModuleDir) -> None:
    """Disabled targets, and everything when settings.enabled is false, are skipped."""
    name = mods.name("disabled")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:send_invoices", enabled=False)))
    off = Settings(background_tasks=(_target(f"{name}:send_reminders"),), enabled=False)
    hooks.install(off)
    module = importlib.import_module(name)
    assert not hasattr(module.send_invoices, "__wrapped__")
    assert not hasattr(module.send_reminders, "__wrapped__")
    # The module's own functions, untouched: calling them records nothing.
    assert module.send_invoices.__module__ == name and module.send_invoices.__qualname__ == (
        "send_invoices"
    )
    with capture_transactions() as records:
        assert module.send_invoices() == "sent" and module.send_reminders() == "reminded"
    assert records == []


def test_missing_attribute_warns_and_import_goes_on(
    mods: ModuleDir, caplog: pytest.LogCaptureFixture
) -> None:
    """An unresolvable target logs one warning naming the entry and close names."""
    name = mods.name("typo")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:send_invoice"), _target(f"{name}:send_reminders")))
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        module = importlib.import_module(name)
    warnings = [r.getMessage() for r in caplog.records if r.name == "tasktrace"]
    assert len(warnings) == 1
    assert "test.toml: entry[1]" in warnings[0]
    assert "'send_invoice'" in warnings[0] and "did you mean 'send_invoices'" in warnings[0]
    assert hasattr(module.send_reminders, "__wrapped__")
    failed = [a for a in hooks.applied() if not a.ok]
    assert len(failed) == 1 and failed[0].path is None


def test_glob_matching_nothing_warns(mods: ModuleDir, caplog: pytest.LogCaptureFixture) -> None:
    """A glob that matches nothing is a warning, not an error."""
    name = mods.name("noglob")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:zzz*")))
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        importlib.import_module(name)
    assert "matched nothing" in caplog.text


def test_strict_mode_fails_the_import(mods: ModuleDir) -> None:
    """With strict settings, an unresolvable target raises TargetError from the import."""
    name = mods.name("strict")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:send_invoice"), strict=True))
    with pytest.raises(TargetError, match="did you mean 'send_invoices'"):
        importlib.import_module(name)


def test_strict_mode_raises_from_install_for_imported_module(mods: ModuleDir) -> None:
    """With strict settings, install() raises for an already imported bad target."""
    name = mods.name("strict_now")
    mods.write(f"{name}.py", JOBS)
    importlib.import_module(name)
    with pytest.raises(TargetError, match=r"test\.toml: entry"):
        hooks.install(_settings(_target(f"{name}:nope"), strict=True))


def test_resolve_target_for_validation(mods: ModuleDir) -> None:
    """resolve_target imports and resolves without wrapping; import errors are TargetError."""
    name = mods.name("validate")
    mods.write(f"{name}.py", JOBS)
    found = hooks.resolve_target(_target(f"{name}:Exporter.*"))
    assert [r.path for r in found][:2] == ["Exporter.run", "Exporter.create"]
    assert not hasattr(sys.modules[name].Exporter.run, "__wrapped__")
    with pytest.raises(TargetError, match="cannot import module"):
        hooks.resolve_target(_target("tt_no_such_module_abc:f"))


# -------------------------------------------------------------------- __main__ targets

SITECUSTOMIZE = """
import os, sys
from tasktrace import hooks
from tasktrace.config import Settings, TargetSettings
functions = os.environ["TT_TEST_TARGETS"].split(",")
targets = tuple(
    TargetSettings("background_task", f, source=f"cfg: background_task[{i}]")
    for i, f in enumerate(functions, 1)
)
hooks.install(Settings(background_tasks=targets, strict=bool(os.environ.get("TT_TEST_STRICT"))))
"""

SCRIPT = """
import builtins, json, sys
def helper():
    return 1
X = helper()
class Exporter:
    def run(self):
        return "ran"
def main():
    print("main wrapped:", hasattr(main, "__wrapped__"))
    print("run wrapped:", hasattr(vars(Exporter)["run"], "__wrapped__"))
    print("tracing:", sys.gettrace() is not None)
    print("import restored:", builtins.__import__.__module__ == "builtins")
if __name__ == "__main__":
    main()
"""


def _run(
    tmp_path: Path, targets: str, *args: str, strict: bool = False
) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "job.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), SRC, str(tmp_path)])
    env["TT_TEST_TARGETS"] = targets
    if strict:
        env["TT_TEST_STRICT"] = "1"
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.integration
@pytest.mark.parametrize("how", [("job.py",), ("-m", "job")])
def test_main_targets_wrapped_before_called(tmp_path: Path, how: tuple[str, ...]) -> None:
    """__main__ targets are wrapped before the script calls them (script and -m), and
    the tracer is gone by then."""
    result = _run(tmp_path, "__main__:main,__main__:Exporter.run", *how)
    assert result.returncode == 0, result.stderr
    assert "main wrapped: True" in result.stdout
    assert "run wrapped: True" in result.stdout
    assert "tracing: False" in result.stdout
    assert "import restored: True" in result.stdout


@pytest.mark.integration
def test_main_glob_targets(tmp_path: Path) -> None:
    """Glob __main__ targets wrap what the script defined before it first calls itself."""
    result = _run(tmp_path, "__main__:[m]ain,__main__:Exp*.r?n", "job.py")
    assert result.returncode == 0, result.stderr
    assert "main wrapped: True" in result.stdout and "run wrapped: True" in result.stdout


@pytest.mark.integration
def test_main_missing_target_warns_with_suggestion(tmp_path: Path) -> None:
    """A __main__ target the script never defines warns with close names; the script runs."""
    result = _run(tmp_path, "__main__:main,__main__:mian", "job.py")
    assert result.returncode == 0, result.stderr
    assert "main wrapped: True" in result.stdout
    assert "cfg: background_task[2]" in result.stderr
    assert "did you mean 'main'" in result.stderr


@pytest.mark.integration
def test_main_missing_target_strict_fails(tmp_path: Path) -> None:
    """In strict mode a missing __main__ target makes the script fail."""
    result = _run(tmp_path, "__main__:mian", "job.py", strict=True)
    assert result.returncode != 0
    assert "TargetError" in result.stderr


@pytest.mark.integration
def test_install_from_running_script_applies_at_once(tmp_path: Path) -> None:
    """install() called inside a running script wraps its __main__ targets immediately."""
    script = tmp_path / "inline.py"
    script.write_text(
        textwrap.dedent(
            """
            from tasktrace import hooks
            from tasktrace.config import Settings, TargetSettings
            def work():
                return 1
            work_target = TargetSettings("background_task", "__main__:work")
            hooks.install(Settings(background_tasks=(work_target,)))
            print("work wrapped:", hasattr(work, "__wrapped__"))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRACE_")}
    env["PYTHONPATH"] = SRC
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "work wrapped: True" in result.stdout


@pytest.mark.integration
def test_main_rebound_target_is_rewrapped(tmp_path: Path) -> None:
    """A target re-bound at top level (decorated after definition, over several lines)
    is wrapped again, and a glob sees functions defined after a top-level call."""
    (tmp_path / "rebind.py").write_text(
        textwrap.dedent(
            """
            import functools
            def deco(f):
                @functools.wraps(f)
                def inner(*a):
                    return f(*a)
                inner.decorated = True
                return inner
            X = deco(lambda: 1)()
            def main():
                print("main:", hasattr(main, "__wrapped__"), getattr(main, "decorated", False))
            main = deco(
                main,
            )
            def process_a():
                pass
            if __name__ == "__main__":
                main()
                print("process_a:", hasattr(process_a, "__wrapped__"))
            """
        )
    )
    result = _run(tmp_path, "__main__:main,__main__:process_*", "rebind.py")
    assert result.returncode == 0, result.stderr
    assert "main: True True" in result.stdout
    assert "process_a: True" in result.stdout


def test_top_level_stores_reads_bytecode() -> None:
    """_top_level_stores finds each top-level binding with its last line."""
    code = compile("import os\nx = 1\ndef f():\n    y = 2\nx = 3\n", "<t>", "exec")
    stores = hooks._top_level_stores(code)
    assert stores == {"os": 1, "x": 5, "f": 3}


# ------------------------------------------------------------- aliases, strict globs

ALIASES = """
def f():
    return "f"

g = f

class Thing:
    def run(self):
        return "run"

    again = run
"""


def test_glob_over_aliases_installs_one_wrapper(mods: ModuleDir) -> None:
    """With ``g = f`` matched by one glob, ``mod.f is mod.g`` stays true, in classes too."""
    name = mods.name("aliases")
    mods.write(f"{name}.py", ALIASES)
    hooks.install(_settings(_target(f"{name}:*"), _target(f"{name}:Thing.*")))
    module = importlib.import_module(name)
    assert hasattr(module.f, "__wrapped__")
    assert module.f is module.g
    assert vars(module.Thing)["run"] is vars(module.Thing)["again"]
    with capture_transactions() as records:
        assert module.g() == "f"
    assert [r.name for r in records] == [f"{name}:f"]


def test_explicit_targets_on_aliases_share_the_wrapper(mods: ModuleDir) -> None:
    """Two targets naming an original and its alias, of one kind or two, stay identical."""
    name = mods.name("explicit_aliases")
    mods.write(f"{name}.py", ALIASES)
    hooks.install(
        _settings(
            _target(f"{name}:g"),
            _target(f"{name}:f"),
            _target(f"{name}:f", kind="function_trace"),
            _target(f"{name}:g", kind="function_trace"),
        )
    )
    module = importlib.import_module(name)
    assert module.f is module.g
    assert all(a.ok for a in hooks.applied())


def test_reload_keeps_aliases_identical(mods: ModuleDir) -> None:
    """After importlib.reload the fresh functions get fresh wrappers, aliases still one."""
    name = mods.name("reload_aliases")
    mods.write(f"{name}.py", ALIASES)
    hooks.install(_settings(_target(f"{name}:*")))
    module = importlib.import_module(name)
    before = module.f
    importlib.reload(module)
    assert module.f is module.g
    assert module.f is not before and hasattr(module.f, "__wrapped__")


def test_glob_matching_only_classes_says_so(
    mods: ModuleDir, caplog: pytest.LogCaptureFixture
) -> None:
    """A glob that matched only classes warns naming them and what to target instead."""
    name = mods.name("only_classes")
    mods.write(f"{name}.py", "class Err(Exception):\n    pass\n")
    hooks.install(_settings(_target(f"{name}:E*")))
    with caplog.at_level(logging.WARNING, logger="tasktrace"):
        module = importlib.import_module(name)
    assert "matched nothing" in caplog.text and "the classes 'Err'" in caplog.text
    assert isinstance(module.Err, type)


def test_strict_glob_matching_nothing_fails_the_import(mods: ModuleDir) -> None:
    """With strict settings, a glob matching nothing in the imported module is fatal."""
    name = mods.name("strict_glob")
    mods.write(f"{name}.py", JOBS)
    hooks.install(_settings(_target(f"{name}:zzz*"), strict=True))
    with pytest.raises(TargetError, match=r"test\.toml: entry\[1\].*matched nothing"):
        importlib.import_module(name)


def _launch(
    tmp_path: Path, config: str, *python_args: str, strict: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``python *python_args`` under ``tasktrace-admin run-program`` in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRACE_", "OTEL_"))}
    env.pop("PYTHONWARNINGS", None)
    env["TASKTRACE_REPORTER"] = "memory"
    if strict:
        env["TASKTRACE_STRICT"] = "1"
    (tmp_path / "tasktrace.toml").write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "tasktrace", "run-program", sys.executable, *python_args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_strict_glob_matching_nothing_is_fatal_under_the_launcher(tmp_path: Path) -> None:
    """Under TASKTRACE_STRICT=1 the import fails; the traceback ends in one clear line."""
    (tmp_path / "jobs.py").write_text("class Job:\n    pass\n")
    (tmp_path / "prog.py").write_text("import jobs\nprint('ran')\n")
    config = '[[background_task]]\nfunction = "jobs:J*"\n'
    plain = _launch(tmp_path, config, "prog.py")
    assert plain.returncode == 0 and plain.stdout == "ran\n"
    strict = _launch(tmp_path, config, "prog.py", strict=True)
    assert strict.returncode != 0 and strict.stdout == ""
    last = strict.stderr.strip().splitlines()[-1]
    assert last.startswith("tasktrace.exceptions.TargetError: ")
    assert "'jobs:J*': the glob matched nothing in 'jobs'" in last
    assert "the classes 'Job'" in last


NOISY = """
import warnings
warnings.warn("noisy is deprecated", DeprecationWarning, stacklevel=2)

def job():
    return 1
"""


def test_import_time_warnings_are_attributed_to_the_importer(tmp_path: Path) -> None:
    """A target module's stacklevel=2 warning at import names the importing code, so
    ``-W error::DeprecationWarning:__main__`` fails the same plainly and instrumented."""
    (tmp_path / "noisy.py").write_text(NOISY)
    (tmp_path / "prog.py").write_text("import noisy\nprint(noisy.job())\n")
    config = '[[background_task]]\nfunction = "noisy:job"\n'
    flags = ("-W", "error::DeprecationWarning:__main__", "prog.py")
    plain = subprocess.run(
        [sys.executable, *flags], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 1 and "DeprecationWarning: noisy is deprecated" in plain.stderr
    instrumented = _launch(tmp_path, config, *flags)
    assert instrumented.returncode == 1, instrumented.stderr
    assert "DeprecationWarning: noisy is deprecated" in instrumented.stderr
    shown = _launch(tmp_path, config, "-W", "always::DeprecationWarning", "prog.py")
    assert shown.returncode == 0 and shown.stdout == "1\n"
    assert "prog.py:1: DeprecationWarning: noisy is deprecated" in shown.stderr
    assert "hooks.py" not in shown.stderr
