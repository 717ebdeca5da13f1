"""tasktrace._compat: the same TOML parsing, entry points and namespace loaders on 3.9-3.13."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import pytest

from tasktrace._compat import entry_points, load_toml, namespace_loader_for, toml_decode_error


def test_load_toml_parses_to_plain_dicts() -> None:
    """load_toml() returns nested dicts and lists of the TOML's values."""
    data = load_toml('a = 1\n[t]\nb = ["x", 2.5]\n[[arr]]\nc = true\n')
    assert data == {"a": 1, "t": {"b": ["x", 2.5]}, "arr": [{"c": True}]}


def test_bad_toml_raises_the_parsers_error_with_its_position() -> None:
    """A syntax error raises toml_decode_error(), whose message gives line and column."""
    error = toml_decode_error()
    assert issubclass(error, ValueError)
    with pytest.raises(error, match=r"line 2"):
        load_toml("a = 1\nb = = 2\n")


def test_entry_points_finds_the_installed_console_script() -> None:
    """entry_points(group) lists what installed distributions declare, here our own CLI."""
    found = {ep.name: ep.value for ep in entry_points("console_scripts")}
    assert found.get("tasktrace-admin") == "tasktrace.admin:main"


def test_entry_points_of_an_unknown_group_is_empty() -> None:
    """A group nothing declares gives an empty list, not an error."""
    assert entry_points("tasktrace.no-such-group") == []


def test_namespace_loader_is_the_one_the_import_system_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """namespace_loader_for() gives a namespace package the loader and __path__ import would."""
    name = "tasktrace_compat_ns_pkg"
    (tmp_path / name).mkdir()
    (tmp_path / name / "mod.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        imported = importlib.import_module(name)
        spec = importlib.machinery.PathFinder.find_spec(name, [str(tmp_path)])
        assert spec is not None and spec.submodule_search_locations is not None
        loader = namespace_loader_for(spec)
        assert type(loader) is type(imported.__loader__)
        spec.loader = loader
        module = importlib.util.module_from_spec(spec)
        assert list(module.__path__) == [str(tmp_path / name)]
        assert module.__loader__ is loader
    finally:
        sys.modules.pop(name, None)
