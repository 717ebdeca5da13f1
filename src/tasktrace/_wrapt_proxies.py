"""wrapt proxies, for callables that are not plain Python functions.

Plain functions (the common case, including methods, classmethods and staticmethods) get a
function wrapper from :mod:`tasktrace.wrappers`, which is faster to call and needs no
wrapt. Anything else (a callable object, a ``functools.partial``, a builtin, another
library's proxy) is wrapped here with ``wrapt.FunctionWrapper``, which keeps it
transparent; this module, and so wrapt (about 50 ms to import, as it pulls in asyncio and
importlib.metadata), is imported only when such a target is actually wrapped.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, Dict, FrozenSet, Tuple

import wrapt


def _resolve_reference(module: str, qualname: str) -> Any:
    """Find ``module.qualname`` again when unpickling a wrapped function."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _reference(obj: Any) -> Tuple[Any, Tuple[str, str]]:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(f"cannot pickle {obj!r}: only module-level functions and methods can")
    return _resolve_reference, (module, qualname)


# wrapt's stubs declare their classes only for Python 3.10+, and mypy checks for 3.9: there
# the base classes are unknown (name-defined) and so untyped (misc: subclassing Any).
class _BoundWrapper(wrapt.BoundFunctionWrapper):  # type: ignore[name-defined, misc]
    """A tasktrace wrapper bound to an instance or class; pickles like a bound method."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        instance = self._self_instance
        if instance is None:
            return _reference(self)
        return getattr, (instance, self.__name__)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        # wrapt's proxies refuse to be copied; a bound method copies as itself.
        return self

    def __deepcopy__(self, memo: Dict[int, Any]) -> Any:
        # Like a bound method: a deep copy binds the same function to a copy of the instance.
        instance = self._self_instance
        if instance is None or isinstance(instance, type):
            return self
        return getattr(copy.deepcopy(instance, memo), self.__name__)


class TaskTraceWrapper(wrapt.FunctionWrapper):  # type: ignore[name-defined, misc]
    """The proxy tasktrace puts around a function; ``kind`` says what it records."""

    __bound_function_wrapper__ = _BoundWrapper

    def __init__(self, wrapped: Any, wrapper: Any, kind: str) -> None:
        super().__init__(wrapped, wrapper)
        self._self_tasktrace_kind = kind

    @property
    def __tasktrace_kinds__(self) -> FrozenSet[str]:
        """The kinds of tasktrace wrapping applied, this one and any underneath."""
        inner: FrozenSet[str] = getattr(self.__wrapped__, "__tasktrace_kinds__", frozenset())
        return inner | {self._self_tasktrace_kind}

    def __reduce_ex__(self, protocol: Any) -> Any:
        return _reference(self)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        # wrapt's proxies refuse to be copied; a function (shallow or deep) copies as itself,
        # and so must its wrapper, or copying any object that holds one would fail.
        return self

    def __deepcopy__(self, memo: Dict[int, Any]) -> Any:
        return self
