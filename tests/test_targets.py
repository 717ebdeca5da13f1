"""Tests for tasktrace.targets: parsing, glob checking and resolution."""

from __future__ import annotations

import types
from typing import Any

import pytest

from tasktrace.exceptions import ConfigurationError, TargetError
from tasktrace.targets import Target, is_glob, no_match_hint, parse_target, resolve


def _module() -> types.ModuleType:
    module = types.ModuleType("sample_jobs")
    source = """
from os import path
from typing import Any

CONSTANT = 3

def send_invoices(): pass
def send_reminders(): pass
def _private(): pass
async def fetch(): pass

class Exporter:
    limit = 5
    def run(self): pass
    def rerun(self): pass
    def __init__(self): pass
    @classmethod
    def create(cls): pass
    @staticmethod
    def helper(): pass
    @property
    def size(self): return 1
    class Inner:
        def go(self): pass

class Importer(Exporter):
    def read(self): pass

class Bexporter:
    def run(self): pass
"""
    exec(compile(source, "sample_jobs.py", "exec"), module.__dict__)
    return module


def _paths(module: Any, pattern: str) -> list[str]:
    return [r.path for r in resolve(module, pattern)]


def test_parse_plain_target() -> None:
    """A plain target splits into module, object path and segments."""
    target = parse_target(" billing.jobs:Exporter.run ")
    assert target == Target("billing.jobs", "Exporter.run", ("Exporter", "run"))
    assert str(target) == "billing.jobs:Exporter.run"
    assert not target.has_glob


def test_parse_glob_target() -> None:
    """Glob segments with *, ?, [..] and [!..] are accepted and flagged as globs."""
    for text in ("m:*", "m:send_?nvoices", "m:[ab]*.run", "m:Ex[!x]orter.r*", "m:[a-z]*"):
        assert parse_target(text).has_glob
    assert is_glob("a*") and not is_glob("abc")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("billing.jobs", "has no ':'"),
        ("a:b:c", "more than one ':'"),
        (":send", "empty module part"),
        ("billing.jobs:", "empty object path"),
        ("billing..jobs:f", "empty segment in the module name"),
        ("billing.jobs:Exporter..run", "empty segment in the object path"),
        ("billing-jobs:f", "invalid module name"),
        ("bill*.jobs:f", "glob in the module name"),
        ("m:send-invoices", "not a Python name"),
        ("m:f[x", "'[' without a closing ']'"),
        ("m:f]x", "not a Python name"),
        ("m:f*]", "']' without a matching '['"),
        ("m:f[]", "empty character set"),
        ("m:f[a.b]", "bad glob"),
        ("m:f$", "not a Python name"),
        ("m:f$*", "cannot be part of a Python name"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    """Each malformed target raises ConfigurationError saying what is wrong and the fix."""
    with pytest.raises(ConfigurationError) as info:
        parse_target(text)
    message = str(info.value)
    assert fragment in message
    assert repr(text) in message


def test_parse_error_gives_an_example() -> None:
    """The missing-colon message shows how to write a target."""
    with pytest.raises(ConfigurationError, match=r"module:object\.path"):
        parse_target("billing.jobs.send")


def test_resolve_plain_function() -> None:
    """A plain name resolves to the module attribute with the module as parent."""
    module = _module()
    (found,) = resolve(module, "send_invoices")
    assert found.parent is module
    assert found.attribute == "send_invoices"
    assert found.path == "send_invoices"
    assert found.value is module.send_invoices


def test_resolve_method_keeps_descriptors() -> None:
    """Class attributes come from the class __dict__, so classmethod/staticmethod show."""
    module = _module()
    (create,) = resolve(module, "Exporter.create")
    assert isinstance(create.value, classmethod)
    assert create.parent is module.Exporter
    (helper,) = resolve(module, "Exporter.helper")
    assert isinstance(helper.value, staticmethod)


def test_resolve_nested_and_inherited() -> None:
    """Paths go through nested classes; inherited methods resolve with the subclass as parent."""
    module = _module()
    (go,) = resolve(module, "Exporter.Inner.go")
    assert go.parent is module.Exporter.Inner
    (run,) = resolve(module, "Importer.run")
    assert run.parent is module.Importer
    assert run.value is vars(module.Exporter)["run"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("send_*", ["send_invoices", "send_reminders"]),
        ("send_?nvoices", ["send_invoices"]),
        ("[BE]*.run", ["Exporter.run", "Bexporter.run"]),
        (
            "Exporter.*",
            [
                "Exporter.run",
                "Exporter.rerun",
                "Exporter.create",
                "Exporter.helper",
            ],
        ),
        ("Exporter.r*", ["Exporter.run", "Exporter.rerun"]),
        ("Exporter.[!r]*", ["Exporter.create", "Exporter.helper"]),
        ("*.Inner.go", ["Exporter.Inner.go"]),
        ("*", ["send_invoices", "send_reminders", "fetch"]),
        ("_*", ["_private"]),
        ("Exporter.__init__", ["Exporter.__init__"]),
        ("Exporter.__in*", ["Exporter.__init__"]),
        ("nothing*", []),
    ],
)
def test_glob_matrix(pattern: str, expected: list[str]) -> None:
    """Globs expand per segment, in definition order, over functions only (never classes),
    skipping private names unless asked for, imported names in modules, and
    data/properties."""
    assert _paths(_module(), pattern) == expected


def test_glob_is_case_sensitive() -> None:
    """Glob matching is case-sensitive on every platform."""
    assert _paths(_module(), "[e]xporter") == []
    assert _paths(_module(), "EXP*") == []
    assert _paths(_module(), "[E]xporter.run") == ["Exporter.run"]
    assert _paths(_module(), "[S]end_*") == []
    assert _paths(_module(), "[s]end_invoices") == ["send_invoices"]


def test_missing_segment_suggests_names() -> None:
    """A missing plain segment raises TargetError naming it, with close names."""
    module = _module()
    with pytest.raises(TargetError) as info:
        resolve(module, "send_invoice")
    message = str(info.value)
    assert "'send_invoice'" in message and "sample_jobs" in message
    assert "did you mean 'send_invoices'" in message
    with pytest.raises(TargetError, match=r"class 'Exporter' has no attribute 'rnu'.*'run'"):
        resolve(module, "Exporter.rnu")


def test_missing_segment_below_glob_is_skipped() -> None:
    """Below a glob, parents lacking the next segment are skipped, not an error."""
    assert _paths(_module(), "*.read") == ["Importer.read"]


def test_cannot_go_through_a_function() -> None:
    """A path through a non-class raises TargetError saying why."""
    with pytest.raises(TargetError, match="not a class"):
        resolve(_module(), "send_invoices.attr")


def _classy_module() -> types.ModuleType:
    module = types.ModuleType("classy_jobs")
    source = """
import functools
from json import dumps

class Err(Exception):
    pass

class Base:
    def __init__(self, x=0):
        self.x = x

class Thing(Base):
    def run(self): pass
    def stop(self): pass
    def __call__(self): pass
    encode = dumps
    class Nested:
        pass

class Plain:
    pass

def job(): pass
alias = job
partial_job = functools.partial(job)

@functools.lru_cache(maxsize=None)
def cached(): pass

def _decorate(func):
    @functools.wraps(func)
    def inner(*args, **kwargs):
        return func(*args, **kwargs)
    return inner

@_decorate
def decorated(): pass

cached_dumps = functools.lru_cache(maxsize=None)(dumps)
instance = Thing()
lam = lambda: None
"""
    exec(compile(source, "classy_jobs.py", "exec"), module.__dict__)
    return module


def test_globs_match_only_functions_defined_here() -> None:
    """A glob never picks classes, exception classes, modules, partials, instances or
    functions imported into the module or assigned into a class body; decorated
    functions (lru_cache, functools.wraps) defined there it does."""
    module = _classy_module()
    assert _paths(module, "*") == ["job", "alias", "cached", "decorated", "lam"]
    assert _paths(module, "Thing.*") == ["Thing.run", "Thing.stop"]
    assert _paths(module, "*.*") == ["Thing.run", "Thing.stop"]
    assert _paths(module, "E*") == []


def test_explicit_class_target_is_an_error_with_methods() -> None:
    """An explicit target naming a class says what to target instead, with its methods."""
    with pytest.raises(TargetError) as info:
        resolve(_classy_module(), "Thing")
    message = str(info.value)
    assert "'classy_jobs:Thing' names a class" in message
    assert "'classy_jobs:Thing.run', 'classy_jobs:Thing.stop'" in message
    assert "'classy_jobs:Thing.*'" in message
    assert "'classy_jobs:Thing.__call__' to time calls of its instances" in message
    assert "'classy_jobs:Thing.__init__' to time its construction" in message


def test_explicit_exception_class_and_module_targets_are_errors() -> None:
    """Exception classes, nested classes and modules cannot be targeted either."""
    module = _classy_module()
    with pytest.raises(TargetError, match="'classy_jobs:Err' names an exception class"):
        resolve(module, "Err")
    with pytest.raises(TargetError, match="names a class") as info:
        resolve(module, "Thing.Nested")
    assert "__call__" not in str(info.value) and "__init__" not in str(info.value)
    with pytest.raises(TargetError, match="names the module 'functools'"):
        resolve(module, "functools")


def test_explicit_targets_may_name_other_callables() -> None:
    """Partials, callable instances and inherited methods can still be named explicitly."""
    module = _classy_module()
    assert _paths(module, "partial_job") == ["partial_job"]
    assert _paths(module, "instance") == ["instance"]
    assert _paths(module, "Thing.__init__") == ["Thing.__init__"]


def test_no_match_hint_names_the_classes_passed_over() -> None:
    """A glob that matched only classes gets a hint naming them and their methods."""
    module = _classy_module()
    hint = no_match_hint(module, "P*")
    assert "'Plain'" in hint and "classes are never wrapped" in hint and "'Plain.*'" in hint
    assert no_match_hint(module, "nothing*") == ""
    hint = no_match_hint(module, "Thing.N*")
    assert "classes 'Thing.Nested':" in hint and "'Thing.Nested.*'" in hint


def _frame_module() -> types.ModuleType:
    module = types.ModuleType("frame_jobs")
    source = """
import inspect
import sys


def make_thing(name):
    thing = type(name, (), {})
    thing.__module__ = sys._getframe(1).f_globals.get("__name__", "__main__")
    return thing


def caller_of():
    return inspect.currentframe().f_back.f_code.co_name


def where_called():
    return inspect.stack()[1].function


def plain(x):
    return x + 1


class Maker:
    def build(self):
        return sys._getframe(1).f_globals["__name__"]

    def ok(self):
        return 1
"""
    exec(compile(source, "frame_jobs.py", "exec"), module.__dict__)
    return module


def test_globs_pass_over_functions_that_read_their_callers_frame() -> None:
    """A function that reads its caller's frame (sys._getframe, inspect.currentframe,
    f_back, inspect.stack) would see the wrapper's frame: a glob leaves it alone."""
    module = _frame_module()
    assert _paths(module, "*") == ["plain"]
    assert _paths(module, "Maker.*") == ["Maker.ok"]
    assert _paths(module, "make_thing") == ["make_thing"]  # named explicitly: wrapped


def test_no_match_hint_names_the_frame_readers_passed_over() -> None:
    """A glob that matched only frame readers says which and how to wrap them anyway."""
    hint = no_match_hint(_frame_module(), "make_*")
    assert "'make_thing', which reads the caller's frame" in hint
    assert "name it without a glob to wrap it anyway" in hint
