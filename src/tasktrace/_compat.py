"""The one place that knows which Python it runs on (TOML parsing, entry points, imports).

Everything here imports its backport or standard module inside the function, so importing
``tasktrace._compat`` costs nothing and the bootstrap pays only for what it uses.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Dict, List, Type

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from importlib.metadata import EntryPoint

__all__ = [
    "entry_points",
    "load_toml",
    "namespace_loader_for",
    "toml_decode_error",
]


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    # The declared dependency on Python < 3.11; mypy checks this branch for 3.9 where the
    # stubs may be absent from the checking environment.
    import tomli  # type: ignore[import-not-found, unused-ignore]

    return tomli


def toml_decode_error() -> Type[Exception]:
    """The exception class the TOML parser raises for a syntax error."""
    error: Type[Exception] = _tomllib().TOMLDecodeError
    return error


def load_toml(text: str) -> Dict[str, Any]:
    """Parse TOML text with ``tomllib`` (3.11+) or ``tomli``.

    Raises:
        The parser's ``TOMLDecodeError`` (see :func:`toml_decode_error`); its message
        holds the line and column.
    """
    data: Dict[str, Any] = _tomllib().loads(text)
    return data


def entry_points(group: str) -> List[EntryPoint]:
    """The installed entry points of ``group``, e.g. ``"tasktrace.reporters"``."""
    if sys.version_info >= (3, 10):
        from importlib.metadata import entry_points as _entry_points

        return list(_entry_points(group=group))
    import importlib_metadata  # type: ignore[import-not-found, unused-ignore]  # < 3.10 dep

    return list(importlib_metadata.entry_points(group=group))


def namespace_loader_for(spec: ModuleSpec) -> Any:
    """The loader the import system would give a namespace package ``spec``.

    A namespace package's spec has ``loader`` None; importlib fills in a
    ``NamespaceLoader`` while creating the module. Code that must put its own loader in
    the spec first (the post-import hooks) uses this to get the same object the import
    system would have made, so ``importlib.resources`` and ``__path__`` behave the same.
    """
    import importlib.machinery

    loader_class = getattr(importlib.machinery, "NamespaceLoader", None)  # 3.11+
    if loader_class is None:
        from importlib import _bootstrap_external

        loader_class = _bootstrap_external._NamespaceLoader
    # importlib builds it the same way, bypassing __init__ to reuse the spec's
    # _NamespacePath (which recomputes __path__ when sys.path changes).
    loader = loader_class.__new__(loader_class)
    loader._path = spec.submodule_search_locations
    return loader
