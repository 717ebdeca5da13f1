"""Parsing, globbing and resolution of ``"module:object.path"`` targets.

A target names a module and a dotted path inside it, e.g. ``billing.jobs:Exporter.run``.
Each segment of the object path may be a glob (``*``, ``?``, ``[abc]``, ``[!abc]``,
matched case-sensitively with :func:`fnmatch.fnmatchcase`); the module part may not, as
modules are found by import hooks that need an exact name.

:func:`parse_target` checks the text (it is called when the config is parsed, so mistakes
are reported with the file and key); :func:`resolve` finds the concrete objects in an
imported module. Neither imports anything heavy: this module must stay importable without
wrapt.
"""

from __future__ import annotations

import types
from fnmatch import fnmatchcase
from typing import Any, List, NamedTuple, Optional, Tuple

from tasktrace._suggest import did_you_mean
from tasktrace.exceptions import ConfigurationError, TargetError

__all__ = ["Resolved", "Target", "is_glob", "no_match_hint", "parse_target", "resolve"]

_GLOB_CHARS = frozenset("*?[")


def is_glob(segment: str) -> bool:
    """Whether ``segment`` contains a glob character (``*``, ``?`` or ``[``)."""
    return not _GLOB_CHARS.isdisjoint(segment)


class Target(NamedTuple):
    """A parsed ``module:object.path``."""

    #: The dotted module name, e.g. ``billing.jobs``.
    module: str
    #: The dotted object path, e.g. ``Exporter.run`` (may contain globs).
    object_path: str
    #: ``object_path`` split on dots, e.g. ``("Exporter", "run")``.
    segments: Tuple[str, ...]

    @property
    def has_glob(self) -> bool:
        """Whether any segment of the object path is a glob."""
        return any(is_glob(segment) for segment in self.segments)

    def __str__(self) -> str:
        return f"{self.module}:{self.object_path}"


class Resolved(NamedTuple):
    """One concrete object a target resolves to."""

    #: The module or class that holds the attribute.
    parent: Any
    #: The attribute's name in ``parent``.
    attribute: str
    #: The concrete dotted path from the module, e.g. ``Exporter.run``.
    path: str
    #: The raw object: from the class ``__dict__`` (along the MRO) when ``parent`` is a
    #: class, so ``classmethod``/``staticmethod`` descriptors are seen as such.
    value: Any


def _check_glob(segment: str) -> str | None:
    """Return what is wrong with a glob segment, or None if it is well formed."""
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "]":
            return "has ']' without a matching '['"
        if char == "[":
            close = segment.find("]", index + 1)
            if close == -1:
                return "has '[' without a closing ']'"
            body = segment[index + 1 : close]
            if body.startswith("!"):
                body = body[1:]
            if not body:
                return "has an empty character set '[]'"
            for inner in body:
                if inner == "[":
                    return "has '[' inside a character set"
                if not (inner.isalnum() or inner in "_-"):
                    return f"has {inner!r} inside a character set"
            index = close + 1
            continue
        if not (char.isalnum() or char in "_*?"):
            return f"has {char!r}, which cannot be part of a Python name or a glob"
        index += 1
    return None


def _fail(text: str, problem: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"target {text!r} {problem}; {fix}")


def parse_target(text: str) -> Target:
    """Parse and check a ``"module:object.path"`` target.

    Args:
        text: e.g. ``"billing.jobs:send_invoices"`` or ``"billing.jobs:Exporter.*"``.

    Returns:
        The parsed target.

    Raises:
        ConfigurationError: with one message saying what is wrong and how to write it:
            no ``:``, more than one ``:``, an empty module or object path, an empty
            segment, a segment that is neither a Python name nor a well-formed glob,
            or a glob in the module part.
    """
    example = "write it as 'module:object.path', e.g. 'billing.jobs:send_invoices'"
    if not isinstance(text, str):
        raise ConfigurationError(f"target {text!r} is not a string; {example}")
    stripped = text.strip()
    if ":" not in stripped:
        raise _fail(text, "has no ':' between the module and the object path", example)
    if stripped.count(":") > 1:
        raise _fail(text, "has more than one ':'", example)
    module, _, object_path = stripped.partition(":")
    module, object_path = module.strip(), object_path.strip()
    if not module:
        raise _fail(text, "has an empty module part before ':'", example)
    if not object_path:
        raise _fail(text, "has an empty object path after ':'", example)
    for part in module.split("."):
        if not part:
            raise _fail(text, f"has an empty segment in the module name {module!r}", example)
        if is_glob(part):
            raise _fail(
                text,
                f"has a glob in the module name {module!r}",
                "globs are allowed only after ':'; list each module in its own entry",
            )
        if not part.isidentifier():
            raise _fail(
                text,
                f"has an invalid module name {module!r} ({part!r} is not a Python name)",
                "use the dotted name you would write after 'import'",
            )
    segments = tuple(segment.strip() for segment in object_path.split("."))
    for segment in segments:
        if not segment:
            raise _fail(text, f"has an empty segment in the object path {object_path!r}", example)
        if is_glob(segment):
            problem = _check_glob(segment)
            if problem is not None:
                raise _fail(
                    text,
                    f"has a bad glob {segment!r}: it {problem}",
                    "globs use *, ? and [chars] within one dotted segment",
                )
        elif not segment.isidentifier():
            raise _fail(
                text,
                f"has {segment!r} in its object path, which is not a Python name",
                "name a function, a class or a method, e.g. 'Exporter.run'",
            )
    return Target(module=module, object_path=".".join(segments), segments=segments)


def _is_class(value: object) -> bool:
    return isinstance(value, type)


def _lookup(parent: Any, name: str) -> Tuple[bool, Any]:
    """Find ``name`` in ``parent`` without running descriptors when parent is a class."""
    if _is_class(parent):
        for klass in parent.__mro__:
            namespace = vars(klass)
            if name in namespace:
                return True, namespace[name]
        return False, None
    try:
        return True, getattr(parent, name)
    except AttributeError:
        return False, None


def _function_of(value: object) -> object:
    """The function a ``classmethod``/``staticmethod`` holds, else ``value`` itself."""
    if isinstance(value, (classmethod, staticmethod)):
        return value.__func__
    return value


def _is_function(value: object) -> bool:
    """Whether ``value`` can be wrapped transparently: a ``def``/``async def``/lambda
    function, a decorated one (a callable whose ``__wrapped__`` chain ends in a function,
    as ``functools.wraps``, ``functools.lru_cache`` and wrapt decorators leave it), or a
    ``classmethod``/``staticmethod`` of either.

    Anything else (a class, an exception class, a module, a ``functools.partial``, a
    callable instance) would have to be replaced by a proxy object that stands in for
    something that is not a function, and a proxy for a class breaks ``except``,
    ``isinstance``, pickling, subclassing and ``match``: globs never pick those.
    """
    value = _function_of(value)
    if isinstance(value, types.FunctionType):
        return True
    if _is_class(value) or not callable(value):
        return False
    try:
        for _ in range(100):  # as inspect.unwrap, without importing inspect
            value = value.__wrapped__  # type: ignore[attr-defined]
            if isinstance(value, types.FunctionType):
                return True
            if _is_class(value):
                return False
    except Exception:  # no __wrapped__ (or a hostile one): not a decorated function  # noqa: BLE001
        return False
    return False


#: Names whose use in a function's own code means it looks at its caller's frame:
#: ``sys._getframe``, ``sys._getframemodulename`` (3.12+), ``inspect.currentframe`` and
#: ``frame.f_back``. (``inspect.stack`` counts only with ``inspect`` beside it.)
_FRAME_NAMES = frozenset({"_getframe", "_getframemodulename", "currentframe", "f_back"})


def _reads_caller_frame(value: object) -> bool:
    """Whether the function ``value`` looks at the frame that called it.

    Such a function sees a wrapper's frame instead of its caller's (attrs's
    ``make_class`` sets ``__module__`` of the class it makes from it, so its classes
    would no longer pickle; ``namedtuple``, ``typing.NewType`` and logging-style helpers
    do the same), and no Python-level wrapper can hide its frame. A glob is a promise of
    transparency, so it passes over these; naming one explicitly still wraps it.
    """
    code = getattr(_function_of(value), "__code__", None)
    names = getattr(code, "co_names", ())
    return not _FRAME_NAMES.isdisjoint(names) or ("stack" in names and "inspect" in names)


def _defined_in(value: object, parent: Any) -> bool:
    """Whether ``value`` was defined in the module of ``parent`` (not imported into it)."""
    home = parent.__name__ if isinstance(parent, types.ModuleType) else parent.__module__
    try:
        return getattr(_function_of(value), "__module__", home) == home
    except Exception:  # an exotic object whose attribute lookup fails: not one of ours  # noqa: BLE001
        return False


def _candidates(
    parent: Any, pattern: str, final: bool, skipped: Optional[List[Tuple[str, str]]] = None
) -> List[Tuple[str, Any]]:
    """The members of ``parent`` matching the glob ``pattern``, in definition order.

    A final segment matches only functions (see :func:`_is_function`) that do not read
    their caller's frame (:func:`_reads_caller_frame`), an inner one only classes; either
    only what the module (or the class's module) defines itself. What a final segment
    passes over is added to ``skipped``, if given, as ``(name, reason)`` with reason
    ``"class"`` or ``"frame"``.
    """
    found = []
    # A snapshot: the namespace may change under us while a module is importing.
    for name, value in list(vars(parent).items()):
        if not isinstance(name, str) or not fnmatchcase(name, pattern):
            continue
        # Private and dunder names only when asked for: "*" must not wrap __init__ or
        # a module's _helpers by surprise.
        if name.startswith("_") and not pattern.startswith("_"):
            continue
        # A glob means "what this module defines": skip names it imported (``from os
        # import path``, ``from typing import Any``, ``run = other.run`` in a class body).
        if not _defined_in(value, parent):
            continue
        if not (_is_function(value) if final else _is_class(value)):
            if final and skipped is not None and _is_class(value):
                skipped.append((name, "class"))
            continue
        if final and _reads_caller_frame(value):
            if skipped is not None:
                skipped.append((name, "frame"))
            continue
        found.append((name, value))
    return found


def _methods_of(klass: type) -> List[str]:
    """The names of the functions ``klass`` defines itself, public ones first."""
    names = [n for n, v in vars(klass).items() if isinstance(n, str) and _is_function(v)]
    return sorted(names, key=lambda n: n.startswith("_"))


def _not_a_function(module_name: str, path: str, value: Any) -> TargetError:
    """The error for an explicit target naming a class or a module."""
    target = f"{module_name}:{path}"
    if isinstance(value, types.ModuleType):
        return TargetError(
            f"{target!r} names the module {value.__name__!r}, which cannot be wrapped; "
            f"name a function in it, e.g. '{value.__name__}:function_name'"
        )
    kind = "an exception class" if issubclass(value, BaseException) else "a class"
    methods = [m for m in _methods_of(value) if not m.startswith("_")]
    if methods:
        examples = ", ".join(f"'{target}.{m}'" for m in methods[:3])
        more = f" (it has {len(methods) - 3} more)" if len(methods) > 3 else ""
        instead = f"its methods, e.g. {examples}{more} or '{target}.*'"
    else:
        instead = f"its methods ('{target}.method', '{target}.*'; it defines none of its own)"
    uses = []
    if _has_function(value, "__call__"):
        uses.append(f"'{target}.__call__' to time calls of its instances")
    if _has_function(value, "__init__"):
        uses.append(f"'{target}.__init__' to time its construction")
    also = "".join(f", or {use}" for use in uses)
    return TargetError(
        f"{target!r} names {kind}, which tasktrace does not wrap (a proxy in its place "
        f"would break except, isinstance, pickling and subclassing); target {instead}{also}"
    )


def _has_function(klass: type, name: str) -> bool:
    """Whether ``klass`` gets a Python function ``name`` from itself or a base class."""
    for base in klass.__mro__:
        if name in vars(base):
            return _is_function(vars(base)[name])
    return False


def _suggest(parent: Any, name: str) -> str:
    """A " did you mean ...?" hint from the names of ``parent``, or an empty string."""
    try:
        names = [n for n in dir(parent) if isinstance(n, str)]
    except Exception:  # a hostile __dir__ must not hide the real error  # noqa: BLE001
        names = []
    if not name.startswith("_"):
        names = [n for n in names if not n.startswith("_")]
    hint = did_you_mean(name, names, n=3)
    return f" ({hint})" if hint else ""


def _describe_parent(parent: Any) -> str:
    if isinstance(parent, types.ModuleType):
        return f"module {parent.__name__!r}"
    if _is_class(parent):
        return f"class {parent.__qualname__!r}"
    return f"{type(parent).__name__} {getattr(parent, '__qualname__', parent)!r}"


def resolve(
    module_obj: Any, object_path: str, skipped: Optional[List[Tuple[str, str]]] = None
) -> List[Resolved]:
    """Find every object ``object_path`` names in ``module_obj``.

    Resolution walks classes and nested classes (and submodules held as attributes); a
    glob segment expands over the parent's own ``__dict__`` in definition order. Names
    starting with ``_`` match a glob only if the glob starts with ``_``; a glob matches
    only what the module (or the class's module) defines, not what it imported; a final
    glob segment matches only functions and ``classmethod``/``staticmethod`` objects of
    functions (what can be wrapped transparently: never classes, exception classes,
    modules or other objects, nor functions that read their caller's frame), an inner one
    only classes. A plain (non-glob) attribute of
    a class may be inherited; the returned ``parent`` is still the class named in the
    path, so patching it affects only that class. A plain final segment may name any
    callable except a class or a module.

    Args:
        module_obj: the imported module (or any object to start from).
        object_path: the dotted path, e.g. ``"Exporter.run"`` or ``"Exporter.*"``.
        skipped: if given, ``(path, reason)`` for each class (reason ``"class"``) or
            caller-frame reading function (``"frame"``) a final glob segment passed
            over is appended to it (for :func:`no_match_hint`).

    Returns:
        The matches, in order; empty when a glob matches nothing.

    Raises:
        TargetError: a non-glob segment does not exist (the message names it and
            suggests close names), a path goes through something that is not a class
            or a module, or a path without globs names a class or a module (the message
            says what to target instead, with the class's methods). Missing segments
            below a glob are skipped instead: the glob simply did not match there.
    """
    segments = object_path.split(".")
    # Each frontier entry is (object, its concrete dotted path so far, its parent).
    frontier: List[Tuple[Any, str, Any]] = [(module_obj, "", None)]
    globbed = False
    for index, segment in enumerate(segments):
        final = index == len(segments) - 1
        next_frontier: List[Tuple[Any, str, Any]] = []
        for parent, path, _ in frontier:
            prefix = f"{path}." if path else ""
            if is_glob(segment):
                names: Optional[List[Tuple[str, str]]] = [] if skipped is not None else None
                for name, value in _candidates(parent, segment, final, names):
                    next_frontier.append((value, prefix + name, parent))
                if skipped is not None and names:
                    skipped.extend((prefix + name, why) for name, why in names)
                continue
            found, value = _lookup(parent, segment)
            if not found:
                if globbed:
                    continue
                where = _describe_parent(parent)
                raise TargetError(
                    f"{where} has no attribute {segment!r}{_suggest(parent, segment)}"
                )
            if not final and not (_is_class(value) or isinstance(value, types.ModuleType)):
                if globbed:
                    continue
                raise TargetError(
                    f"{prefix + segment!r} is a {type(value).__name__}, not a class, so "
                    f"{object_path!r} cannot go through it; name a function, a class or "
                    "a method of a class"
                )
            if final and (_is_class(value) or isinstance(value, types.ModuleType)):
                if globbed:
                    continue
                module_name = getattr(module_obj, "__name__", "?")
                raise _not_a_function(module_name, prefix + segment, value)
            next_frontier.append((value, prefix + segment, parent))
        globbed = globbed or is_glob(segment)
        frontier = next_frontier
    results: List[Resolved] = []
    seen = set()
    for value, path, parent in frontier:
        attribute = path.rpartition(".")[2]
        # An inherited nested class is reached by several paths; patch it only once.
        if (id(parent), attribute) not in seen:
            seen.add((id(parent), attribute))
            results.append(Resolved(parent=parent, attribute=attribute, path=path, value=value))
    return results


def no_match_hint(module_obj: Any, object_path: str) -> str:
    """Why a glob matched nothing in ``module_obj``, when what it passed over is the
    reason; else "".

    For messages: ``" (it passes over the classes 'Thing', 'Err': classes are never
    wrapped; target their methods, e.g. 'Thing.*')"``, and for functions that read their
    caller's frame ``" (it passes over 'make_class', which reads its caller's frame: a
    wrapper would change what it sees; name it without a glob to wrap it anyway)"``.
    """
    skipped: List[Tuple[str, str]] = []
    try:
        resolve(module_obj, object_path, skipped)
    except Exception:  # the caller reports the real problem  # noqa: BLE001
        return ""
    parts = []
    classes = [path for path, why in skipped if why == "class"]
    if classes:
        parts.append(
            f"it passes over the classes {_listed(classes)}: classes are never wrapped; "
            f"target their methods, e.g. '{classes[0]}.*'"
        )
    readers = [path for path, why in skipped if why == "frame"]
    if readers:
        which = "which reads" if len(readers) == 1 else "which read"
        parts.append(
            f"it passes over {_listed(readers)}, {which} the caller's frame: a wrapper "
            "would change what it sees; name it without a glob to wrap it anyway"
        )
    return f" ({'; '.join(parts)})" if parts else ""


def _listed(paths: List[str]) -> str:
    shown = ", ".join(repr(path) for path in paths[:5])
    return shown + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
