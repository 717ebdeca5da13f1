"""wrapt proxies, for callables that are not plain Python functions.

Plain functions (the common case, including methods, classmethods and staticmethods) get a
function wrapper from :mod:`tasktrace.wrappers`, which is faster to call and needs no
wrapt. Anything else (a callable object, a ``functools.partial``, a builtin, another
library's proxy) is wrapped here with ``wrapt.FunctionWrapper``, which keeps it
transparent; this module, and so wrapt (about 50 ms to import, as it pulls in asyncio and
importlib.metadata), is imported only when such a target is actually wrapped.

What the program sees of a proxy:

* ``repr()``, ``str()`` and ``format()`` are those of the wrapped object (wrapt forwards
  ``str``; ``repr``, which wrapt's names the proxy, and ``format`` are forwarded here).
* ``obj.__class__`` is the wrapped object's class, so ``isinstance(proxy, Handler)`` is
  true (wrapt forwards ``__class__``); ``type(proxy)`` is :class:`TaskTraceWrapper`, which
  no proxy can hide.
* ``inspect.signature()`` is the wrapped object's. ``inspect.getfullargspec()`` is the
  same signature as a ``FullArgSpec``: equal to the plain object's for partials, builtins,
  bound methods and objects with a ``__signature__``; for a callable instance or a class
  it lacks the leading ``self`` that ``getfullargspec`` of the plain object lists. Both come
  from the proxy's ``__signature__`` (``hasattr(proxy, "__signature__")`` is true when
  inspect can read the plain object), which inspect returns as it is: ``signature(proxy,
  eval_str=True)`` leaves string annotations unevaluated.
* Pickling: a proxy installed at a module attribute (config targets, ``wrap_*``), or sitting
  at its wrapped object's own ``module.qualname`` (a decorator), pickles by that location
  when the plain object pickles by reference (functions, classes, builtins, objects such as
  ``toolz.curry`` that pickle by name when found at it), and so unpickles as the wrapper
  installed there. Anything else pickles exactly as the plain object does (a partial by
  value, a callable instance by its class and state) and unpickles as the plain object;
  what the plain object refuses, the proxy refuses with a ``TypeError``.
* ``copy.copy()``/``copy.deepcopy()``: the proxy itself when the plain object copies as
  itself (functions, builtins, classes), else a proxy of the same kind around the copy.
"""

from __future__ import annotations

import copy
import copyreg
import importlib
import inspect
import types
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple

import wrapt

_ObjectProxy: Any = getattr(wrapt, "ObjectProxy")  # noqa: B009 (untyped for Python 3.9)

#: Where a proxy was installed: (module name, dotted path from the module).
Location = Tuple[str, str]


def _resolve_reference(module: str, qualname: str) -> Any:
    """Find ``module.qualname`` again when unpickling a wrapped function."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _find(module: Any, qualname: Any) -> Any:
    """``module.qualname`` if it exists (never raises), else None."""
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        return None
    try:
        return _resolve_reference(module, qualname)
    except Exception:  # noqa: BLE001 - a reference that cannot be resolved is simply not found there
        return None


def _reference(obj: Any) -> Tuple[Any, Tuple[str, str]]:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(f"cannot pickle {obj!r}: only module-level functions and methods can")
    return _resolve_reference, (module, qualname)


def _plain_reduce(obj: Any, protocol: int) -> Any:
    """What pickle reduces ``obj`` to: a name (pickled by reference) or a reduce tuple.

    Follows pickle's own order: ``copyreg.dispatch_table``, then functions and classes by
    name, then the object's ``__reduce_ex__``. Raises what that raises.
    """
    cls = type(obj)
    reducer = copyreg.dispatch_table.get(cls)
    if reducer is not None:
        return reducer(obj)
    if cls is types.FunctionType or issubclass(cls, type):
        return getattr(obj, "__qualname__", None) or obj.__name__
    return obj.__reduce_ex__(protocol)


_default_reduce_ex: Any = object.__reduce_ex__
_default_reduce: Any = object.__reduce__


def _is_or_wraps(found: Any, target: Any) -> bool:
    """Whether ``found`` is ``target`` or a tasktrace proxy (at any depth) around it."""
    for _ in range(32):
        if found is target:
            return True
        if type(found) is not TaskTraceWrapper:
            return False
        found = found.__wrapped__
    return False


def _reduce_like_plain(proxy: Any, obj: Any, protocol: int) -> Any:
    """Reduce ``proxy`` exactly as pickle reduces the plain ``obj`` it wraps."""
    import pickle  # late: already imported by whoever is pickling

    try:
        reduced = _plain_reduce(obj, protocol)
    except (TypeError, pickle.PicklingError):
        raise
    except Exception as exc:  # e.g. wrapt's NotImplementedError for its proxies
        raise TypeError(f"cannot pickle {obj!r}: {exc}") from exc
    if not isinstance(reduced, str):
        return reduced
    # A global: pickle finds it by name in its module, and insists it is the same object.
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        # pickle's own search of sys.modules (untyped in the stubs).
        module = getattr(pickle, "whichmodule")(obj, reduced)  # noqa: B009
    found = _find(module, reduced)
    if found is None or not (_is_or_wraps(found, obj) or _is_or_wraps(found, proxy)):
        raise TypeError(f"cannot pickle {obj!r}: it is not found as {module}.{reduced}")
    return _resolve_reference, (module, reduced)


_FAILED = object()


def _reduction_where_found(original: Any) -> Any:
    """Before a proxy replaces ``original`` at its place: True or False if it is known
    whether ``original`` pickles by reference, else its reduction (or ``_FAILED``)."""
    inner = original
    while type(inner) is TaskTraceWrapper:
        if inner._self_tasktrace_location is not None:
            # Installed here by an earlier target, which looked when it was the plain object.
            return bool(inner._self_tasktrace_by_reference)
        inner = inner.__wrapped__
    cls = type(inner)
    if issubclass(cls, type):
        return True
    if (
        copyreg.dispatch_table.get(cls) is None
        and getattr(cls, "__reduce_ex__", None) is _default_reduce_ex
        and getattr(cls, "__reduce__", None) is _default_reduce
    ):
        # The default reduction (class and state) never depends on where the object is;
        # not calling it spares a __getstate__ at install time.
        return False
    try:
        before = _plain_reduce(inner, 2)
    except Exception:  # noqa: BLE001 - the object's own reduction may raise anything
        return _FAILED
    return True if isinstance(before, str) else before


def _pickles_by_reference(original: Any, before: Any) -> bool:
    """Whether ``original``, now replaced by its proxy, pickled by reference to its place.

    True for what pickle saves by name (functions, classes, objects whose ``__reduce_ex__``
    returns a name such as builtins) and for objects whose reduction changed once they were
    no longer found there (``toolz.curry``: by name when found at its name, else by value).
    """
    if isinstance(before, bool):
        return before
    if before is _FAILED:
        return False
    inner = original
    while type(inner) is TaskTraceWrapper:
        inner = inner.__wrapped__
    try:
        after = _plain_reduce(inner, 2)
    except Exception:  # noqa: BLE001 - the reduction may raise anything once the proxy is installed
        return True  # it pickled only while it was found there
    try:
        return bool(before != after)
    except Exception:  # noqa: BLE001 - a custom __eq__ of the reductions may raise anything
        return False


def install_proxy(proxy: Any, parent: Any, attribute: str, location: Location) -> None:
    """``setattr(parent, attribute, proxy)``, noting on ``proxy`` where it now lives and
    whether the plain object pickled by reference there."""
    original = proxy.__wrapped__
    try:
        before = _reduction_where_found(original)
    except Exception:  # an exotic type; pickle as the plain object  # noqa: BLE001
        before = False
    setattr(parent, attribute, proxy)
    proxy._self_tasktrace_location = location
    proxy._self_tasktrace_by_reference = _pickles_by_reference(original, before)


def _copy_plain(proxy: Any, copier: Callable[[Any], Any]) -> Any:
    """``proxy`` if the wrapped object copies as itself, else a proxy around its copy."""
    if proxy._tasktrace_reference() is not None:
        return proxy  # the plain object, found by name, copies as itself (as functions do)
    wrapped = proxy.__wrapped__
    try:
        copied = copier(wrapped)
    except NotImplementedError:
        if not isinstance(wrapped, _ObjectProxy):
            raise
        # wrapt refuses to copy its proxies; this one copies as itself, as it always did.
        return proxy
    if copied is wrapped:
        return proxy
    if type(copied) is TaskTraceWrapper:
        # Copied by finding it again at its name (toolz.curry), where this proxy now is.
        return copied
    return type(proxy)(copied, proxy._self_wrapper, proxy._self_tasktrace_kind)


class _Transparent:
    """What both proxies forward that wrapt does not (mixed in before the wrapt base)."""

    __slots__ = ()
    __wrapped__: Any

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __format__(self, spec: str) -> str:
        # wrapt 2 forwards it; wrapt 1 formats the proxy (so only an empty spec works).
        return format(self.__wrapped__, spec)

    @property
    def __signature__(self) -> inspect.Signature:
        # inspect would take the proxy for a method descriptor (it has __get__) and find no
        # signature, or, for a class, report the proxy's own __init__.
        try:
            return inspect.signature(self.__wrapped__)
        except (TypeError, ValueError) as exc:
            # As for the plain object: none (wrapt's __getattr__ then asks the wrapped one).
            raise AttributeError("__signature__") from exc


# wrapt's stubs declare their classes only for Python 3.10+, and mypy checks for 3.9: there
# the base classes are unknown (name-defined) and so untyped (misc: subclassing Any).
class _BoundWrapper(_Transparent, wrapt.BoundFunctionWrapper):  # type: ignore[name-defined, misc]
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


class TaskTraceWrapper(_Transparent, wrapt.FunctionWrapper):  # type: ignore[name-defined, misc]
    """The proxy tasktrace puts around a function; ``kind`` says what it records."""

    __bound_function_wrapper__ = _BoundWrapper

    #: Set by :func:`install_proxy`: where the proxy was installed, and whether the plain object
    #: pickled by reference there (``_self_`` attributes are the proxy's own, not forwarded).
    _self_tasktrace_location: Optional[Location] = None
    _self_tasktrace_by_reference = False

    def __init__(self, wrapped: Any, wrapper: Any, kind: str) -> None:
        super().__init__(wrapped, wrapper)
        self._self_tasktrace_kind = kind

    @property
    def __tasktrace_kinds__(self) -> FrozenSet[str]:
        """The kinds of tasktrace wrapping applied, this one and any underneath."""
        inner: FrozenSet[str] = getattr(self.__wrapped__, "__tasktrace_kinds__", frozenset())
        return inner | {self._self_tasktrace_kind}

    def _tasktrace_reference(self) -> Optional[Location]:
        """Where this proxy is found, if it stands in there for a plain object found by name."""
        location = self._self_tasktrace_location
        if location is not None:
            if self._self_tasktrace_by_reference and _find(*location) is self:
                return location
            return None
        # Not installed by tasktrace: a decorator may have put it at the wrapped object's
        # own name, which pickle would use for the plain object.
        wrapped = self.__wrapped__
        natural = (getattr(wrapped, "__module__", None), getattr(wrapped, "__qualname__", None))
        if _find(*natural) is self:
            return natural  # type: ignore[return-value]  # _find checked both are str
        return None

    def __reduce_ex__(self, protocol: Any) -> Any:
        location = self._tasktrace_reference()
        if location is None:
            return _reduce_like_plain(self, self.__wrapped__, protocol)
        if self._self_tasktrace_location is None:
            _reduce_like_plain(self, self.__wrapped__, protocol)  # refuse what refuses plainly
        return _resolve_reference, location

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        # wrapt's proxies refuse to be copied: copy as the plain object does.
        return _copy_plain(self, copy.copy)

    def __deepcopy__(self, memo: Dict[int, Any]) -> Any:
        return _copy_plain(self, lambda wrapped: copy.deepcopy(wrapped, memo))
