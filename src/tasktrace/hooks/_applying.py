"""Applying a target to a module: resolving its path, wrapping each match once per original
object and kind (aliases stay identical), and recording every outcome for
``validate-config``."""

from __future__ import annotations

from types import FunctionType, ModuleType
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Set, Tuple

from tasktrace import _importlib_bootstrap

# Re-exported (``X as X``) for the tests, which knew them here.
from tasktrace._importlib_bootstrap import _PostImportFinder as _PostImportFinder
from tasktrace._importlib_bootstrap import _registry as _registry
from tasktrace._logging import get_logger
from tasktrace.config import TargetSettings
from tasktrace.exceptions import TargetError

if TYPE_CHECKING:
    from tasktrace.targets import Resolved

# tasktrace.targets (and fnmatch) are imported where targets are resolved, once a target
# module is imported: the bootstrap installs the hooks in every process it starts.


# Lazy: ``logging`` is imported only when there is something to log.
_log = get_logger()

_MAIN = "__main__"

# The global state, behind the registry's lock (see tasktrace._importlib_bootstrap).
# Callbacks are always run *outside* it.
_lock = _importlib_bootstrap.lock
#: Targets already registered by ``install`` (which is idempotent).
_installed: Set[TargetSettings] = set()


#: What got wrapped (or failed), keyed so that a reload replaces instead of adding.
_applied: Dict[Tuple[TargetSettings, str, Optional[str]], AppliedTarget] = {}


#: One wrapper per original object and kind in each namespace (module or class), so that
#: aliases (``g = f``) stay identical: ``(id(parent), id(original), kind)`` -> ``(parent,
#: original, wrapper)``. The entry holds the parent and the original, so neither id can be
#: reused while it exists. Per module name, with the execution it belongs to (see
#: ``_cached_wrappers``), so a reload starts afresh.
_wrappers: Dict[str, Tuple[int, Dict[Tuple[int, int, str], Tuple[Any, Any, Any]]]] = {}


class AppliedTarget(NamedTuple):
    """One outcome of applying a target, for ``validate-config`` and tests."""

    #: The config entry.
    target: TargetSettings
    #: The module it was applied to (``"__main__"`` for the script).
    module: str
    #: The concrete dotted path wrapped, e.g. ``"Exporter.run"``; None when nothing was.
    path: Optional[str]
    #: Why nothing was wrapped, or None when ``path`` was.
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether ``path`` was wrapped."""
        return self.error is None


# --------------------------------------------------------------------------------------
# Applying targets
# --------------------------------------------------------------------------------------


def _record(result: AppliedTarget) -> None:
    with _lock:
        _applied[(result.target, result.module, result.path)] = result


def _cached_wrappers(module_name: str) -> Dict[Tuple[int, int, str], Tuple[Any, Any, Any]]:
    """The wrappers made for ``module_name``'s current execution (call with ``_lock``)."""
    execution = _importlib_bootstrap.executions(module_name)
    entry = _wrappers.get(module_name)
    if entry is None or entry[0] != execution:
        # First use, or the module was executed again (importlib.reload): its functions are
        # new objects, and the old wrappers must not be kept alive.
        entry = _wrappers[module_name] = (execution, {})
    return entry[1]


def _wrap(target: TargetSettings, module_name: str, match: Resolved) -> Any:
    """Patch one resolved match (no second lookup: ``match`` holds parent and raw value).

    One wrapper per original object: a match whose value was already wrapped as
    ``target.kind`` in the same namespace (``g = f``, two targets naming ``f`` and ``g``,
    a glob matching both) gets that same wrapper installed at its name, so ``mod.f is
    mod.g`` stays true. The first target applied names it.
    """
    from tasktrace import api  # late: only once a target module is imported

    parent, original = match.parent, match.value
    key = (id(parent), id(original), target.kind)
    with _lock:
        cache = _cached_wrappers(module_name)
        cached = cache.get(key)
    if cached is not None and cached[0] is parent and cached[1] is original:
        wrapper = cached[2]
        setattr(parent, match.attribute, wrapper)
        return wrapper
    wrapper = api.wrap_resolved(
        target.kind,
        parent,
        match.attribute,
        original,
        f"{module_name}:{match.path}",
        application=target.application,
        name=target.name,
        group=target.group,
        location=(module_name, match.path),
    )
    if wrapper is not original:
        with _lock:
            _cached_wrappers(module_name)[key] = (parent, original, wrapper)
        if target.max_duration is not None:
            from tasktrace._running import MAX_DURATIONS

            MAX_DURATIONS[target.name or f"{module_name}:{match.path}"] = target.max_duration
    return wrapper


def _where(target: TargetSettings) -> str:
    """The config entry, for messages: ``"tasktrace.toml: background_task[2]: 'm:f'"``."""
    return f"{target.source}: {target.function!r}" if target.source else repr(target.function)


def _fail(target: TargetSettings, module_name: str, message: str, strict: bool) -> None:
    _record(AppliedTarget(target, module_name, None, message))
    if strict:
        raise TargetError(message)
    _log.warning("tasktrace: %s; continuing without it", message)


def _apply_target(target: TargetSettings, strict: bool, module: ModuleType) -> List[str]:
    """Resolve ``target`` in ``module`` and wrap every match; returns the paths wrapped.

    Problems are logged once (or raised as ``TargetError`` when ``strict``).
    """
    from tasktrace.targets import no_match_hint, resolve

    module_name = getattr(module, "__name__", target.module)
    where = _where(target)
    try:
        matches = resolve(module, target.object_path)
    except TargetError as exc:
        _fail(target, module_name, f"{where}: {exc}", strict)
        return []
    except Exception as exc:  # a hostile module (odd __getattr__, __dir__); never break it  # noqa: BLE001
        _fail(target, module_name, f"{where}: cannot resolve: {exc!r}", strict)
        return []
    if not matches:
        hint = no_match_hint(module, target.object_path)
        message = f"{where}: the glob matched nothing in {module_name!r}{hint}"
        # Strict: fatal, as validate-config treats it (the module was imported, so the
        # glob had its chance; a typo or a refactoring must not silently disable it).
        _fail(target, module_name, message, strict)
        return []
    return [match.path for match in matches if _apply_match(target, strict, module, match)]


def _apply_match(target: TargetSettings, strict: bool, module: ModuleType, match: Resolved) -> bool:
    """Wrap one resolved match of ``target`` and record the outcome; True if wrapped."""
    module_name = getattr(module, "__name__", target.module)
    if not isinstance(match.value, FunctionType) and _apply_task_object(
        target, strict, module_name, match
    ):
        return True
    try:
        _wrap(target, module_name, match)
    except Exception as exc:
        message = f"{_where(target)}: cannot wrap {match.path!r}: {exc}"
        _record(AppliedTarget(target, module_name, match.path, message))
        if strict:
            raise TargetError(message) from exc
        _log.warning("tasktrace: %s; continuing without it", message)
        return False
    _record(AppliedTarget(target, module_name, match.path))
    return True


def _apply_task_object(
    target: TargetSettings, strict: bool, module_name: str, match: Resolved
) -> bool:
    """Hand a match that is a job system's task object (a Celery ``@app.task``) to its
    integration instead of wrapping it: its worker calls it through the broker's registry,
    never through this attribute. True if ``match`` was one (handed on, or failed)."""
    from tasktrace._state import STATE
    from tasktrace.integrations import _targets as integrations

    found = integrations.task_object(match.value, describe=False)
    if found is None:
        return False
    reason = integrations.unsupported_reason(found, STATE.settings)
    if reason is not None:
        message = f"{_where(target)}: {match.path!r} records nothing: {reason}"
        _record(AppliedTarget(target, module_name, match.path, message))
        if strict:
            raise TargetError(message)
        _log.warning("tasktrace: %s", message)
        return True
    integrations.apply_target(target, match.value, found)
    _record(AppliedTarget(target, module_name, match.path))
    return True


def applied() -> List[AppliedTarget]:
    """What the hooks have done so far, in order: one entry per target and concrete path
    (a reload replaces its entries rather than adding to them)."""
    with _lock:
        return list(_applied.values())
