"""The post-import hook machinery: a ``sys.meta_path`` finder and loader proxies.

``register_post_import_hook(name, callback)`` records the callback in a registry and puts a
small finder at ``sys.meta_path[0]``. The finder's ``find_spec`` returns None at once for
every module not in the registry (one dict lookup, which is all most imports pay). For a
registered module it asks the other finders for the real spec and swaps the spec's loader
for a proxy. The proxy puts the real loader back on the module and spec, lets the real
loader execute the module, then runs the module's callbacks. Everything else a loader
offers is delegated. :mod:`tasktrace.hooks` builds the config's targets on top of this.

Why this module's name holds "importlib" and "_bootstrap": the proxy's ``exec_module`` is
a Python frame between the importing code and the module being executed. CPython's
``warnings`` skips frames whose file name contains both words when it counts
``stacklevel`` (``_is_internal_frame`` in ``Lib/warnings.py`` and its C twin in
``Python/_warnings.c``, the same test on 3.9 to 3.13), as it skips importlib's own
frames. With the proxy here, a module that calls ``warnings.warn(..., stacklevel=2)``
while it is imported is attributed to the code importing it, as without tasktrace, so
``-W error::DeprecationWarning:__main__`` and ``filterwarnings(module=...)`` behave the
same. Tracebacks still show the frame (CPython hides only importlib's own). Keep the
code that runs while a module executes in this module, and nothing that warns.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from tasktrace._logging import get_logger
from tasktrace.exceptions import TaskTraceError

__all__ = [
    "PostImportHook",
    "executions",
    "lock",
    "register_post_import_hook",
    "register_post_import_hooks",
]

# Lazy: ``logging`` is imported only when there is something to log.
_log = get_logger()

PostImportHook = Callable[[ModuleType], Any]

#: The lock of the registry, shared with :mod:`tasktrace.hooks` for its own state.
#: Callbacks are always run *outside* it: they import modules (``tasktrace.api`` pulls in
#: wrapt) and may register further hooks, so holding the lock there would deadlock
#: against another thread importing a registered module, or against the callback itself.
lock = threading.Lock()
#: Module name -> its callbacks, in registration order; kept after the module is imported
#: so that ``importlib.reload`` re-applies them.
_registry: Dict[str, List[PostImportHook]] = {}
#: Names whose module a proxy loader is executing right now: a hook registered meanwhile is
#: run by that proxy when execution finishes, not at once on the half-built module.
_executing: Set[str] = set()
#: Module name -> how many times a proxy loader has executed it (a reload counts again).
_executions: Dict[str, int] = {}
_finder: Optional[_PostImportFinder] = None
#: Per thread, the names this thread's finder is looking up (see ``find_spec``).
_lookups = threading.local()


def executions(module_name: str) -> int:
    """How many times ``module_name`` has been executed through a proxy loader so far."""
    return _executions.get(module_name, 0)


# --------------------------------------------------------------------------------------
# The finder and the loader proxies
# --------------------------------------------------------------------------------------


class _PostImportFinder:
    """A ``sys.meta_path`` finder that only ever acts for modules with registered hooks."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _registry:  # the fast path: one dict lookup
            return None
        # Another finder may itself call importlib.util.find_spec() for the same name
        # (wrapt's and New Relic's hook finders do); without this guard we would recurse.
        active: Optional[Set[str]] = getattr(_lookups, "names", None)
        if active is None:
            active = _lookups.names = set()
        if fullname in active:
            return None
        active.add(fullname)
        try:
            spec = _find_real_spec(self, fullname, path, target)
        finally:
            active.discard(fullname)
        if spec is None:
            return None
        return _hook_spec(spec)

    def invalidate_caches(self) -> None:
        """Nothing cached here (``importlib.invalidate_caches`` calls every finder)."""


def _find_real_spec(me: object, fullname: str, path: Any, target: Any) -> Any:
    """The spec the rest of ``sys.meta_path`` finds for ``fullname``, or None."""
    for finder in list(sys.meta_path):
        if finder is me or isinstance(finder, _PostImportFinder):
            continue
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is not None:
            spec = find_spec(fullname, path, target)
        else:  # a legacy finder (find_module only), still honoured on Python < 3.12
            find_module = getattr(finder, "find_module", None)
            if find_module is None:
                continue
            loader = find_module(fullname, path)
            if loader is None:
                continue
            import importlib.util

            spec = importlib.util.spec_from_loader(fullname, loader)
        if spec is not None:
            return spec
    return None


def _hook_spec(spec: Any) -> Any:
    """Put a proxy loader in ``spec`` that runs the hooks once the module has executed."""
    loader = spec.loader
    namespace = False
    if loader is None:
        if spec.submodule_search_locations is None:
            return spec  # no loader at all: nothing we can hook, the import fails anyway
        from tasktrace._compat import namespace_loader_for

        loader, namespace = namespace_loader_for(spec), True
    if isinstance(loader, (_LoaderProxy, _LegacyLoaderProxy)):
        return spec
    if hasattr(loader, "exec_module"):
        spec.loader = _LoaderProxy(loader, spec.name, namespace)
    elif hasattr(loader, "load_module"):
        spec.loader = _LegacyLoaderProxy(loader, spec.name)
    return spec


class _LoaderProxy:
    """Delegates to the real loader; after ``exec_module`` runs the module's hooks."""

    def __init__(self, loader: Any, name: str, namespace: bool) -> None:
        self._tasktrace_loader = loader
        self._tasktrace_name = name
        self._tasktrace_namespace = namespace

    def __getattr__(self, attribute: str) -> Any:
        # Only called for what this class does not define: get_code, get_source,
        # is_package, get_resource_reader, get_data, get_filename, archive, path, ...
        return getattr(self._tasktrace_loader, attribute)

    def __repr__(self) -> str:
        return f"<tasktrace hook loader for {self._tasktrace_loader!r}>"

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._tasktrace_loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        loader, name = self._tasktrace_loader, self._tasktrace_name
        # Put the real loader back before the module runs: the module and everything
        # afterwards (inspect, pkgutil, importlib.resources, isinstance checks) see exactly
        # what they would have seen without us.
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = loader
        if self._tasktrace_namespace and not hasattr(module, "__file__"):
            module.__file__ = None  # as importlib sets it for namespace packages
        before = sys.modules.get(name)
        with lock:
            _executing.add(name)
            _executions[name] = _executions.get(name, 0) + 1
        try:
            loader.exec_module(module)
        finally:
            with lock:
                _executing.discard(name)
                callbacks = list(_registry.get(name, ()))
        # A module may replace itself in sys.modules while executing; hook the replacement.
        after = sys.modules.get(name)
        target = after if after is not None and after is not before else module
        _run_callbacks(callbacks, target)


class _LegacyLoaderProxy:
    """For loaders with only ``load_module`` (Python 3.9's zipimporter, old plugins)."""

    def __init__(self, loader: Any, name: str) -> None:
        self._tasktrace_loader = loader
        self._tasktrace_name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._tasktrace_loader, attribute)

    def load_module(self, fullname: str) -> ModuleType:
        module: ModuleType = self._tasktrace_loader.load_module(fullname)
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._tasktrace_loader
        with lock:
            callbacks = list(_registry.get(self._tasktrace_name, ()))
        _run_callbacks(callbacks, module)
        return module


def _run_callbacks(callbacks: Sequence[PostImportHook], module: ModuleType) -> None:
    """Run ``callbacks`` on ``module``; never while holding ``_lock``.

    A callback raising a ``TaskTraceError`` (strict mode) fails the import after the other
    callbacks have run; any other exception is logged and the import goes on.
    """
    fatal: Optional[TaskTraceError] = None
    for callback in callbacks:
        try:
            callback(module)
        except TaskTraceError as exc:
            fatal = fatal or exc
        except Exception:  # noqa: BLE001 - a failing hook must not fail the import of the program's module (logged)
            _log.warning(
                "tasktrace: post-import hook %r for module %r failed; the module is "
                "imported without it",
                callback,
                getattr(module, "__name__", "?"),
                exc_info=True,
            )
    if fatal is not None:
        raise fatal


def register_post_import_hook(module_name: str, callback: PostImportHook) -> None:
    """Call ``callback(module)`` when ``module_name`` has been imported (and re-imported).

    If the module is already in ``sys.modules`` the callback runs at once, in this thread.
    Otherwise it runs right after the module's code has executed, in the importing thread,
    and again after every ``importlib.reload`` of it. Callbacks of one module run in
    registration order.

    Raises:
        TaskTraceError: only what the callback raises when run at once; a callback that
            raises a ``TaskTraceError`` during an import fails that import (strict mode),
            any other exception is logged.
    """
    register_post_import_hooks([(module_name, callback)])


def register_post_import_hooks(hooks: Sequence[Tuple[str, PostImportHook]]) -> None:
    """:func:`register_post_import_hook` for many ``(module_name, callback)`` pairs at once.

    All are registered under one acquisition of the lock (a config may list thousands of
    targets, and the bootstrap registers them in every process it starts); then the
    callbacks of modules already imported run, in order.

    Raises:
        TaskTraceError: the first one a callback run at once raised, after all have run.
    """
    global _finder
    run_now: List[Tuple[PostImportHook, ModuleType]] = []
    with lock:
        if _finder is None:
            _finder = _PostImportFinder()
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        modules = sys.modules
        for module_name, callback in hooks:
            callbacks = _registry.get(module_name)
            if callbacks is None:
                callbacks = _registry[module_name] = []
            callbacks.append(callback)
            module = modules.get(module_name)
            if module is not None and module_name not in _executing:
                run_now.append((callback, module))
    fatal: Optional[TaskTraceError] = None
    for callback, module in run_now:
        try:
            _run_callbacks([callback], module)
        except TaskTraceError as exc:
            fatal = fatal or exc
    if fatal is not None:
        raise fatal


def _reset_for_tests() -> None:
    """Forget every hook and remove the finder."""
    global _finder
    with lock:
        finder = _finder
        _registry.clear()
        _executing.clear()
        _executions.clear()
        _finder = None
    if finder is not None:
        while finder in sys.meta_path:
            sys.meta_path.remove(finder)
