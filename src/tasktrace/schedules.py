"""Schedules of ``[[background_task]]`` targets: ``schedule``, ``grace`` and ``timezone``.

A schedule is a 5-field cron expression (minute, hour, day of month, month, day of week, as
Debian's cron reads them), one of the macros ``@hourly``, ``@daily`` (``@midnight``),
``@weekly``, ``@monthly``, ``@yearly`` (``@annually``), or ``every <duration>`` (``every
90s``, ``every 15m``, ``every 2h``, ``every 1d``).

Two levels of checking, so that the bootstrap stays cheap:

* :func:`check_syntax` (used when a config is loaded, in every instrumented process) looks
  only at the shape of the text and imports nothing beyond what start-up already has;
* :func:`parse` (used by ``validate-config``, ``check`` and the dashboard) builds a
  :class:`Schedule` with cronsim, which catches everything else (``61 * * * *``,
  ``0 0 31 2 *``), and zoneinfo for the time zone.

Cron expressions are evaluated by `cronsim <https://pypi.org/project/cronsim/>`_, the
library healthchecks.io runs: it follows Debian cron in the hard parts: day of month and
day of week are OR-ed unless one of them starts with ``*``, a job at a wall-clock time that
a DST change skips runs once right after the gap, and one in a repeated hour runs once.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import NamedTuple, Optional

from tasktrace.environment import parse_duration

#: The ``@`` macros and the cron expressions they stand for.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: A grace period given to a schedule that does not say (five minutes).
DEFAULT_GRACE = 300.0

SCHEDULE_EXAMPLE = 'schedule = "*/15 * * * *" (cron), "@daily" or "every 10m"'
TIMEZONE_EXAMPLE = 'timezone = "Europe/Berlin" (an IANA time zone name) or "UTC"'

_CRON_CHARS = frozenset("0123456789*/,-?LW#ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class ScheduleError(ValueError):
    """A schedule, grace or time zone that cannot be used; the message says how to fix it."""


def check_syntax(text: str) -> None:
    """Raise :class:`ScheduleError` unless ``text`` has the shape of a schedule.

    Cheap and import-free: a cron expression is only checked for its five fields here;
    :func:`parse` checks their values.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered.startswith("@"):
        if lowered not in MACROS:
            raise ScheduleError(
                f"{text!r} is not a schedule macro: use one of "
                f"{', '.join(sorted(MACROS))}, or write {SCHEDULE_EXAMPLE}"
            )
        return
    if lowered.startswith("every"):
        rest = stripped[5:].strip()
        try:
            parse_duration(rest)
        except ValueError:
            raise ScheduleError(
                f"{text!r}: 'every' needs a duration such as 90s, 15m, 2h or 1d "
                f"(write {SCHEDULE_EXAMPLE})"
            ) from None
        return
    fields = stripped.split()
    if len(fields) != 5 or any(not set(field) <= _CRON_CHARS for field in fields):
        raise ScheduleError(
            f"{text!r} is not a 5-field cron expression (minute hour day-of-month month "
            f"day-of-week); write {SCHEDULE_EXAMPLE}"
        )


def check_timezone_syntax(name: str) -> None:
    """Raise :class:`ScheduleError` unless ``name`` looks like an IANA zone name."""
    if not name or name != name.strip() or any(c.isspace() for c in name) or ".." in name:
        raise ScheduleError(f"{name!r} is not a time zone name; write {TIMEZONE_EXAMPLE}")


def load_timezone(name: Optional[str]) -> tzinfo:
    """The zone named ``name`` (an IANA name), or the machine's local zone for None.

    Raises:
        ScheduleError: no such zone on this machine.
    """
    if name is None:
        return _local_zone()
    if name.upper() == "UTC":
        return timezone.utc
    check_timezone_syntax(name)
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except (ValueError, OSError, LookupError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ScheduleError(
            f"{name!r} is not a time zone known here ({type(exc).__name__}); "
            f"write {TIMEZONE_EXAMPLE}"
        ) from None


def _local_zone() -> tzinfo:
    """The machine's zone with its DST rules (``TZ``, else ``/etc/localtime``); a fixed
    offset only when neither can be read."""
    import os
    from zoneinfo import ZoneInfo

    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as data:
            return ZoneInfo.from_file(data, key="localtime")
    except (ValueError, OSError, LookupError):
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else timezone.utc


class Schedule(NamedTuple):
    """A parsed schedule: when a task is due, and how late it may start."""

    #: The text as written in the config (``"*/5 * * * *"``, ``"@daily"``, ``"every 2s"``).
    text: str
    #: Seconds of ``every <duration>``; None for a cron expression.
    period: Optional[float]
    #: The 5-field cron expression (macros expanded); None for ``every``.
    cron: Optional[str]
    #: Seconds a run may start after it is due and still count as on time.
    grace: float
    #: The zone the cron expression is read in.
    zone: tzinfo
    #: The zone's name as configured (None: the machine's local zone).
    zone_name: Optional[str]

    def next_after(self, epoch: float) -> float:
        """The first time the task is due strictly after ``epoch`` (epoch seconds).

        For ``every <duration>`` that is ``epoch`` plus the period: ``check`` counts it from
        the end of the last run (or from when the schedule was first recorded).
        """
        if self.period is not None:
            return epoch + self.period
        from cronsim import CronSim

        start = datetime.fromtimestamp(epoch, self.zone)
        due: datetime = next(CronSim(self.cron or "", start))
        return due.timestamp()


def parse(text: str, grace: Optional[float] = None, zone_name: Optional[str] = None) -> Schedule:
    """Parse a schedule fully (cron values checked by cronsim, the zone loaded).

    Raises:
        ScheduleError: what is wrong, with an example of what to write.
    """
    check_syntax(text)
    stripped = text.strip()
    lowered = stripped.lower()
    zone = load_timezone(zone_name)
    grace = DEFAULT_GRACE if grace is None else grace
    if lowered.startswith("every"):
        return Schedule(text, parse_duration(stripped[5:].strip()), None, grace, zone, zone_name)
    cron = MACROS.get(lowered, stripped)
    from cronsim import CronSim, CronSimError

    try:
        CronSim(cron, datetime.now(timezone.utc))
    except CronSimError as exc:
        raise ScheduleError(
            f"{text!r} is not a valid cron expression ({exc}); write {SCHEDULE_EXAMPLE}"
        ) from None
    return Schedule(text, None, cron, grace, zone, zone_name)


def describe(schedule: Schedule) -> str:
    """``schedule`` in a few words for ``validate-config``: text, zone and grace."""
    zone = schedule.zone_name or "local time"
    if schedule.period is not None:
        return f"{schedule.text} (grace {short_duration(schedule.grace)})"
    return f"{schedule.text} ({zone}, grace {short_duration(schedule.grace)})"


def short_duration(seconds: float) -> str:
    """``seconds`` as the shortest exact duration text (``90s``, ``5m``, ``2h``)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
