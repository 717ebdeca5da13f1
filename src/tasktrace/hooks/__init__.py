"""Post-import hooks that apply the configured targets when their modules are imported.

How it works
------------
``register_post_import_hook(name, callback)`` records the callback in a registry and puts a
small finder at ``sys.meta_path[0]``. The finder's ``find_spec`` returns None at once for
every module not in the registry (one dict lookup, which is all most imports pay). For a
registered module it asks the other finders for the real spec and swaps the spec's loader
for a proxy. The proxy puts the real loader back on the module and spec, lets the real
loader execute the module, then runs the module's callbacks. Everything else a loader
offers (``get_code``, ``get_source``, ``is_package``, ``get_resource_reader``, ``get_data``,
...) is delegated, so ``python -m``, zip imports, ``importlib.resources`` and namespace
packages behave as before. A module already imported when its hook is registered gets the
callback at once. Callbacks stay registered: ``importlib.reload`` finds the spec again,
goes through the proxy and re-applies them to the fresh functions of the reloaded module
(the wrappers make applying a target twice to the same object a no-op). The finder, the
loader proxies and the registry live in :mod:`tasktrace._importlib_bootstrap`, whose name
keeps the proxy's frame out of ``warnings`` attribution (its docstring says why).

Targets
-------
``install(settings)`` registers every enabled ``[[background_task]]`` and
``[[function_trace]]`` entry. When the module is imported the entry's object path is
resolved with :func:`tasktrace.targets.resolve` (globs expanded) and each match is patched
with ``tasktrace.api.wrap_background_task``/``wrap_function_trace`` (imported only then, as
they pull in wrapt). A target that does not resolve logs one warning naming the config
entry and the closest names, and the import goes on; with ``settings.strict`` the hook
raises :class:`~tasktrace.exceptions.TargetError` instead, failing that import (a glob
that matches nothing in the imported module too). Each original object gets one wrapper
per kind: aliases (``g = f``) matched by one target or several get the same wrapper
object, so ``mod.f is mod.g`` stays true.

``__main__`` targets
--------------------
The script (or ``-m`` module) runs as ``__main__``, which is never imported through the
finders, so hooks cannot see it. Since the bootstrap's sitecustomize runs before the script,
``install`` arms a tracer instead (:func:`install_main_hook`, which ``install`` calls; the
bootstrap needs nothing more than ``initialize()`` -> ``install(settings)``):

* ``sys.settrace`` gets a global trace function that returns None (no tracing) for every
  frame except the ``<module>`` frame of ``__main__``. CPython creates
  ``sys.modules["__main__"]`` before sitecustomize runs, and both ``python script.py`` and
  ``runpy`` (``-m``) execute the code in that module's dict, so the frame is recognised by
  ``frame.f_globals is vars(__main__)``.
* When that frame starts, the names its bytecode binds at top level (``STORE_NAME``) are
  read with :mod:`dis`; those a target can refer to are *watched*. A line tracer on that
  one frame checks the watched names before each top-level line runs and wraps a target
  in ``__main__.__dict__`` as soon as its name is bound (again after a re-binding such as
  ``main = click.command()(main)``), so ``main`` is wrapped before
  ``if __name__ == "__main__": main()`` calls it.
* Tracing stops (``sys.settrace(None)``, ``builtins.__import__`` restored) at the first
  line past the last line that stores a watched name, once all of them are bound; if one
  never is (a store in a branch not taken), at the first call the script makes into one of
  its own functions past that line; at the latest when the top-level code ends.
* While armed, ``builtins.__import__`` pauses tracing for the duration of each import
  statement, so the imports a script starts with cost nothing extra.

Cost, measured on CPython 3.11: none for imports; about 0.15 microseconds for each Python
function call the script's top-level code makes (outside imports) before its last target
is bound, and none afterwards. Verified with ``python script.py`` and ``python -m mod`` on
CPython 3.9 to 3.13. Limits: a target bound and called on the same line is called
unwrapped that once; functions defined inside ``main()`` are not module-level and cannot be
targets. ``python -c`` code is traced like a script, but a target it lacks is not warned
about: that is how multiprocessing starts spawn/forkserver children, whose ``__main__`` is
re-run as ``__mp_main__`` by runpy, outside the import system, so ``__main__`` targets are
not applied in those children. The interactive prompt is not supported.
If a trace function is already set when ``install`` runs (a debugger, coverage), the
tracer is not armed and one warning says so. ``install`` called from inside the running script (e.g.
``tasktrace.initialize()`` at the top of ``main()``) applies ``__main__`` targets at once to
what the script has defined by then (see :func:`apply_main_targets`).

Modules: this package holds ``install`` and the per-target hook; :mod:`._applying`
resolves and wraps, once per original object, and records outcomes; :mod:`._main` is the
``__main__`` tracer; the finder and the loader proxies are in
:mod:`tasktrace._importlib_bootstrap`.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, List, Tuple

from tasktrace import _importlib_bootstrap
from tasktrace._importlib_bootstrap import PostImportHook, register_post_import_hook

# Re-exported (``X as X``) for the tests, which knew them here.
from tasktrace._importlib_bootstrap import _PostImportFinder as _PostImportFinder
from tasktrace._importlib_bootstrap import _registry as _registry
from tasktrace.config import Settings, TargetSettings
from tasktrace.exceptions import TargetError
from tasktrace.hooks import _main
from tasktrace.hooks._applying import (
    _MAIN,
    AppliedTarget,
    _applied,
    _apply_target,
    _installed,
    _lock,
    _wrappers,
    applied,
)
from tasktrace.hooks._main import _main_targets, apply_main_targets, install_main_hook
from tasktrace.hooks._main import _top_level_stores as _top_level_stores  # (the tests')

if TYPE_CHECKING:
    from tasktrace.targets import Resolved

# tasktrace.targets (and fnmatch) are imported where targets are resolved, once a target
# module is imported: the bootstrap installs the hooks in every process it starts.

__all__ = [
    "AppliedTarget",
    "PostImportHook",
    "applied",
    "apply_main_targets",
    "install",
    "install_main_hook",
    "register_post_import_hook",
    "resolve_target",
]


class _TargetHook:
    """The post-import hook of one target (a class so its repr names the target)."""

    __slots__ = ("strict", "target")

    def __init__(self, target: TargetSettings, strict: bool) -> None:
        self.target = target
        self.strict = strict

    def __call__(self, module: ModuleType) -> None:
        _apply_target(self.target, self.strict, module)

    def __repr__(self) -> str:
        return f"<tasktrace target {self.target.function!r} from {self.target.source!r}>"


def install(settings: Settings) -> None:
    """Register every enabled target of ``settings``; idempotent.

    Targets whose module is already imported are applied at once; the others when their
    module is imported. ``__main__`` targets arm the tracer of :func:`install_main_hook`
    (or apply at once when called from inside the running script). Nothing happens when
    ``settings.enabled`` is false.

    Raises:
        TargetError: with ``settings.strict``, a target of an already imported module does
            not resolve.
    """
    if not settings.enabled:
        return
    # Written for tables of thousands of targets: the bootstrap runs this in every
    # process it starts, so each target costs a set lookup and one small object.
    enabled = [t for t in (*settings.background_tasks, *settings.function_traces) if t.enabled]
    with _lock:
        new = [t for t in dict.fromkeys(enabled) if t not in _installed]
        _installed.update(new)
    strict = settings.strict
    main: List[Tuple[TargetSettings, bool]] = []
    hooks: List[Tuple[str, PostImportHook]] = []
    for target in new:
        module = target.function.partition(":")[0]
        if module == _MAIN:
            main.append((target, strict))
        else:
            hooks.append((module, _TargetHook(target, strict)))
    if main:
        with _lock:
            _main_targets.extend(main)
    # In bulk: one lock for the whole table, however many targets the config lists.
    _importlib_bootstrap.register_post_import_hooks(hooks)
    if main:
        install_main_hook()
    # A target naming the script's own module (job:work for python job.py) would wait for
    # an import that never comes: say so now rather than record nothing.
    _main.warn_script_targets(new)


def resolve_target(target: TargetSettings) -> List[Resolved]:
    """Import ``target``'s module and resolve its object path, without wrapping anything.

    For ``validate-config``. ``__main__`` targets resolve against the running
    ``__main__`` module.

    Raises:
        TargetError: the module cannot be imported (the cause is chained) or a segment
            does not exist (with close names).
    """
    import importlib

    from tasktrace.targets import resolve

    try:
        module = importlib.import_module(target.module)
    except Exception as exc:
        raise TargetError(f"cannot import module {target.module!r}: {exc}") from exc
    return resolve(module, target.object_path)


def _reset_for_tests() -> None:
    """Forget every hook, target and outcome; remove the finder; disarm the tracer."""
    with _lock:
        _installed.clear()
        _applied.clear()
        _wrappers.clear()
    _main._reset_for_tests()
    _importlib_bootstrap._reset_for_tests()
