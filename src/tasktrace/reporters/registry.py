"""Builds the configured reporters by name: built-ins first, then entry-point plugins.

A plugin is an entry point in the group ``tasktrace.reporters`` whose name is the reporter
name used in ``[reporter] type`` and whose object is a factory called with the agent
:class:`~tasktrace.config.Settings` (a reporter class taking settings qualifies)::

    [project.entry-points."tasktrace.reporters"]
    kafka = "mypkg.reporter:KafkaReporter"

Entry points are only looked up when a configured name is not built in, because reading
installed distributions' metadata costs tens of milliseconds.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Tuple

from tasktrace._suggest import did_you_mean
from tasktrace.config import Settings
from tasktrace.exceptions import ReporterError
from tasktrace.reporters.base import Reporter

__all__ = ["BUILTIN_REPORTERS", "ENTRY_POINT_GROUP", "create_reporter", "create_reporters"]

#: The entry-point group plugins register reporter factories in.
ENTRY_POINT_GROUP = "tasktrace.reporters"

#: Built-in reporter names and the "module:class" that implements each (imported lazily).
BUILTIN_REPORTERS: Dict[str, str] = {
    "console": "tasktrace.reporters.console:ConsoleReporter",
    "jsonl": "tasktrace.reporters.jsonl:JsonlReporter",
    "memory": "tasktrace.reporters.memory:MemoryReporter",
    "otlp": "tasktrace.reporters.otlp:OtlpReporter",
    "sqlite": "tasktrace.reporters.sqlite:SqliteReporter",
}


def _entry_points() -> Dict[str, Any]:
    """Installed plugin entry points by name."""
    from tasktrace._compat import entry_points

    return {ep.name: ep for ep in entry_points(ENTRY_POINT_GROUP)}


def _builtin_factory(name: str) -> Callable[[Settings], Reporter]:
    module_name, _, attr = BUILTIN_REPORTERS[name].partition(":")
    factory: Callable[[Settings], Reporter] = getattr(importlib.import_module(module_name), attr)
    return factory


def create_reporter(name: str, settings: Settings) -> Reporter:
    """Build the reporter called ``name``.

    Raises:
        ReporterError: ``name`` is neither built in nor an installed plugin (the message
            lists the known names, with a "did you mean" when one is close), or the plugin
            failed to load or to build its reporter.
    """
    if name in BUILTIN_REPORTERS:
        return _builtin_factory(name)(settings)
    try:
        plugins = _entry_points()
    except Exception as exc:
        raise ReporterError(f"cannot list reporter plugins: {exc}") from exc
    entry_point = plugins.get(name)
    if entry_point is None:
        known = sorted(set(BUILTIN_REPORTERS) | set(plugins))
        hint = did_you_mean(name, known)
        hint = f"; {hint}" if hint else ""
        raise ReporterError(
            f"unknown reporter {name!r} in [reporter] type{hint} "
            f"(known: {', '.join(known)}; plugins register in the entry-point group "
            f"{ENTRY_POINT_GROUP!r})"
        )
    try:
        factory = entry_point.load()
        reporter: Reporter = factory(settings)
    except Exception as exc:
        raise ReporterError(
            f"reporter plugin {name!r} ({entry_point.value}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    return reporter


def create_reporters(settings: Settings) -> List[Reporter]:
    """Build every reporter named in ``settings.reporter.types``, in order, once each.

    Raises:
        ReporterError: see :func:`create_reporter`.
    """
    seen: Tuple[str, ...] = ()
    reporters: List[Reporter] = []
    for name in settings.reporter.types:
        name = name.strip()
        if name in seen:
            continue
        seen += (name,)
        reporter = create_reporter(name, settings)
        # A reporter may bring companions that deliver another signal apart (the OTLP
        # reporter's metrics): each is a reporter of its own in the ledger.
        reporters.extend(getattr(reporter, "companions", ()))
        reporters.append(reporter)
    return reporters
