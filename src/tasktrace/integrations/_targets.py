"""Config targets that name a job system's task object (a Celery ``@app.task``): what
the object is, whether it will be recorded, and handing it to its integration.

Apart from the package so that the bootstrap, which only registers the hooks, never loads
it: the import hooks and ``validate-config`` do, when a target resolves.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

from tasktrace.config import Settings, TargetSettings

__all__ = ["TaskObject", "apply_target", "task_object", "unsupported_reason"]


class TaskObject(NamedTuple):
    """A job system's task object found where a config target points."""

    #: The integration (``"celery"``).
    integration: str
    #: How ``validate-config`` names it, e.g. ``"Celery task tasks.add"``.
    description: str


def _mro_names(value: Any) -> Tuple[Tuple[str, str], ...]:
    try:
        return tuple((c.__module__, c.__qualname__) for c in type(value).__mro__)
    except Exception:  # noqa: BLE001 - a hostile class: not a task object
        return ()


def task_object(value: Any, describe: bool = True) -> Optional[TaskObject]:
    """What ``value`` is if it is a job system's task object, else None (never raises).

    Checked by class name, so that no job system is imported to ask. A Celery task may
    still be the lazy proxy ``@app.task`` returns before the app is finalized: with
    ``describe``, naming it evaluates it (as ``validate-config`` and Celery's own
    ``app.tasks`` do); the import hooks pass False and leave it lazy.
    """
    names = _mro_names(value)
    if ("celery.local", "PromiseProxy") in names or ("celery.app.task", "Task") in names:
        name = "?"
        if describe:
            try:
                name = str(value.name)
            except Exception:  # noqa: BLE001 - an unconfigured app: still a Celery task
                pass
        return TaskObject("celery", f"Celery task {name}")
    if ("dramatiq.actor", "Actor") in names:
        name = "?"
        if describe:
            try:
                name = str(value.actor_name)
            except Exception:  # noqa: BLE001 - an odd actor: still an actor
                pass
        return TaskObject("dramatiq", f"Dramatiq actor {name}")
    if ("huey.api", "TaskWrapper") in names:
        name = "?"
        if describe:
            try:
                name = str(value.name or value.func.__name__)
            except Exception:  # noqa: BLE001 - an odd task: still a Huey task
                pass
        return TaskObject("huey", f"Huey task {name}")
    for module, qualname, system in _UNSUPPORTED:
        if (module, qualname) in names:
            return TaskObject("", f"{system} {qualname}")
    return None


#: Task objects of job systems tasktrace has no integration for yet: the worker calls
#: them through the broker's registry, so wrapping the attribute would record nothing.
_UNSUPPORTED: Tuple[Tuple[str, str, str], ...] = ()


def unsupported_reason(found: TaskObject, settings: Settings) -> Optional[str]:
    """Why a target naming ``found`` would record nothing, or None if it will record."""
    if not found.integration:
        return (
            f"{found.description} is run by its worker through the broker's registry, "
            "which tasktrace does not instrument yet; target the plain function it runs "
            "instead (define it in a module of its own and register that)"
        )
    if not getattr(settings.integrations, found.integration, False):
        return (
            f"{found.description} is recorded only by tasktrace's {found.integration} "
            f"integration, which is off; set [integrations] {found.integration} = true"
        )
    return None


def apply_target(target: TargetSettings, value: Any, found: TaskObject) -> None:
    """Hand ``target``, which names task object ``value``, to its integration: its jobs
    get the target's ``name``/``group``/``application``."""
    from tasktrace.integrations import _jobs

    override = _jobs.Override(target.name, target.group, target.application)
    _jobs.add_target(found.integration, value, override)
