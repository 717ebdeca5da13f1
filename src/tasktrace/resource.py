"""The OpenTelemetry resource of this process: who sends the spans and metrics.

One resource per process, computed once (on the first export) and again in a forked child,
which is another process: it gets its own ``service.instance.id`` (a uuid4) and its own
start time, so that its cumulative metrics are a new series rather than a continuation of
its parent's. ``service.name`` is set per application when the resource is used (a program
may report under several apps); everything else is shared.

``OTEL_RESOURCE_ATTRIBUTES`` is parsed as the OpenTelemetry specification says:
comma-separated ``key=value`` pairs, keys and values percent-decoded and stripped of
surrounding blanks; a pair without ``=``, with an empty key or with a bad percent escape is
skipped, and all skipped pairs are named in one warning (by position: a value may be a
secret). Its pairs override the detected attributes (``host.name``, for example, for a
worker on a simulated host), except ``service.name``, which is the app name (see
:mod:`tasktrace.config`: ``OTEL_RESOURCE_ATTRIBUTES``'s ``service.name`` is used as the app
name when nothing else names the app).
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Dict, List, Optional, Tuple, Union

from tasktrace import _fork
from tasktrace._version import __version__

__all__ = [
    "Resource",
    "parse_resource_attributes",
    "process_resource",
    "process_start_ns",
]

#: One attribute value of a resource (OTLP ``AnyValue``: a string or an int here).
Value = Union[str, int]
#: The attributes of a resource, in order, ``service.name`` excluded.
Resource = Tuple[Tuple[str, Value], ...]

#: When this process started, epoch nanoseconds (reset in a forked child): the start time
#: of every cumulative metric series it reports.
_start_ns = time.time_ns()
#: (pid, inputs) -> resource: one per process.
_cache: Dict[Tuple[int, Tuple[object, ...]], Resource] = {}
#: ``OTEL_RESOURCE_ATTRIBUTES`` texts already warned about (one warning each).
_warned: set[str] = set()


def process_start_ns() -> int:
    """When this process started (a forked child: when it was forked), epoch nanoseconds."""
    return _start_ns


def _bad_escape(text: str) -> bool:
    """True if ``text`` has a ``%`` not followed by two hex digits."""
    index = text.find("%")
    while index >= 0:
        pair = text[index + 1 : index + 3]
        if len(pair) != 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            return True
        index = text.find("%", index + 3)
    return False


def parse_resource_attributes(text: str) -> Tuple[Dict[str, str], List[int]]:
    """Parse ``OTEL_RESOURCE_ATTRIBUTES``: ``key1=value1,key2=value2``.

    Keys and values are percent-decoded (UTF-8) and stripped of surrounding blanks; empty
    entries are ignored; a later pair wins over an earlier one with the same key.

    Returns:
        The pairs, and the positions (from 1) of the entries skipped as malformed: no
        ``=``, an empty key, or a ``%`` not followed by two hex digits.
    """
    from urllib.parse import unquote

    pairs: Dict[str, str] = {}
    bad: List[int] = []
    for index, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or _bad_escape(key) or _bad_escape(value):
            bad.append(index)
            continue
        try:
            pairs[unquote(key, errors="strict").strip()] = unquote(value, errors="strict").strip()
        except UnicodeDecodeError:
            bad.append(index)
    return pairs, bad


def resource_attributes_from_text(text: str) -> Dict[str, str]:
    """:func:`parse_resource_attributes`, warning once per process about skipped pairs
    (naming them by position, never by value)."""
    pairs, bad = parse_resource_attributes(text)
    if bad and text not in _warned:
        _warned.add(text)
        from tasktrace._logging import get_logger

        get_logger().warning(
            "tasktrace: OTEL_RESOURCE_ATTRIBUTES: skipped malformed entr%s %s (write "
            "key=value pairs separated by commas, with %%XX escapes for ',', '=' and '%%')",
            "y" if len(bad) == 1 else "ies",
            ", ".join(map(str, bad)),
        )
    return pairs


def process_resource(
    *,
    app_version: Optional[str] = None,
    environment: Optional[str] = None,
    attributes: Mapping[str, str] = {},
) -> Resource:
    """This process's resource attributes, ``service.name`` excluded, computed once per
    process (and per distinct arguments).

    Args:
        app_version: ``service.version`` (config ``app_version``), if set.
        environment: ``deployment.environment.name`` (the ``[env.X]`` chosen), if any.
        attributes: ``OTEL_RESOURCE_ATTRIBUTES``'s pairs (config ``resource_attributes``),
            which override the detected attributes.
    """
    pid = os.getpid()
    key = (pid, (app_version, environment, tuple(sorted(attributes.items()))))
    resource = _cache.get(key)
    if resource is None:
        if len(_cache) > 16:  # (settings changed many times: keep only the latest)
            _cache.clear()
        resource = _cache[key] = _compute(pid, app_version, environment, attributes)
    return resource


#: service.instance.id of this process (a forked child makes its own).
_instance: Tuple[int, str] = (0, "")


def _instance_id(pid: int) -> str:
    global _instance
    if _instance[0] != pid:
        _instance = (pid, str(uuid.uuid4()))
    return _instance[1]


def _compute(
    pid: int,
    app_version: Optional[str],
    environment: Optional[str],
    attributes: Mapping[str, str],
) -> Resource:
    found: Dict[str, Value] = {}
    if app_version:
        found["service.version"] = app_version
    found["service.instance.id"] = _instance_id(pid)
    found["host.name"] = socket.gethostname()
    found["process.pid"] = pid
    found["process.runtime.name"] = sys.implementation.name
    found["process.runtime.version"] = platform.python_version()
    found["telemetry.sdk.name"] = "tasktrace"
    found["telemetry.sdk.language"] = "python"
    found["telemetry.sdk.version"] = __version__
    if environment:
        found["deployment.environment.name"] = environment
    for name, value in attributes.items():
        if name != "service.name":
            found[name] = value
    return tuple(found.items())


def _after_fork_in_child() -> None:
    """A forked child is a new process: a new start time and instance id."""
    global _start_ns
    _start_ns = time.time_ns()
    _cache.clear()


_fork.register(after_in_child=_after_fork_in_child)


def _reset_for_tests() -> None:
    """Compute the resource again, and warn again about bad attributes."""
    _cache.clear()
    _warned.clear()
