"""Tests for tasktrace.targets: parsing, glob checking and resolution."""

from __future__ import annotations

import types
from typing import Any

import pytest

from tasktrace.exceptions import ConfigurationError, TargetError
from tasktrace.targets import Target, is_glob, parse_target, resolve


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
                "Exporter.Inner",
            ],
        ),
        ("Exporter.r*", ["Exporter.run", "Exporter.rerun"]),
        ("Exporter.[!r]*", ["Exporter.create", "Exporter.helper", "Exporter.Inner"]),
        ("*.Inner.go", ["Exporter.Inner.go"]),
        ("*", ["send_invoices", "send_reminders", "fetch", "Exporter", "Importer", "Bexporter"]),
        ("_*", ["_private"]),
        ("Exporter.__init__", ["Exporter.__init__"]),
        ("Exporter.__in*", ["Exporter.__init__"]),
        ("nothing*", []),
    ],
)
def test_glob_matrix(pattern: str, expected: list[str]) -> None:
    """Globs expand per segment, in definition order, over callables only, skipping
    private names unless asked for, imported names in modules, and data/properties."""
    assert _paths(_module(), pattern) == expected


def test_glob_is_case_sensitive() -> None:
    """Glob matching is case-sensitive on every platform."""
    assert _paths(_module(), "[e]xporter") == []
    assert _paths(_module(), "EXP*") == []
    assert _paths(_module(), "[E]xporter") == ["Exporter"]


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
