"""Schedules (SPEC section 7): their syntax check at config load, their full parse, and when
a task is next due: cron in named zones across DST changes, macros, ``every``."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import List
from zoneinfo import ZoneInfo

import pytest

from tasktrace import schedules
from tasktrace.config import ConfigurationError, Settings, load
from tasktrace.schedules import ScheduleError

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def _at(text: str, zone: str) -> float:
    """Epoch seconds of a wall-clock time (``YYYY-mm-dd HH:MM``) in ``zone``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone)).timestamp()


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _runs(expr: str, zone: str, start: str, n: int) -> List[str]:
    schedule = schedules.parse(expr, None, zone)
    out, t = [], _at(start, zone)
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(_utc(t))
    return out


@pytest.mark.parametrize(
    "text",
    ["*/15 * * * *", "0 3 * * 1-5", "30 2 1,15 * *", "@daily", "@HOURLY", "every 90s", "every 2h"],
)
def test_valid_schedules_pass_the_syntax_check_and_parse(text: str) -> None:
    """Cron expressions, macros (any case) and ``every <duration>`` are accepted."""
    schedules.check_syntax(text)
    parsed = schedules.parse(text, None, "UTC")
    assert parsed.grace == schedules.DEFAULT_GRACE


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("* * *", "5-field cron expression"),
        ("* * * * * *", "5-field cron expression"),
        ("@fortnightly", "not a schedule macro"),
        ("every", "'every' needs a duration"),
        ("every 5 parsecs", "'every' needs a duration"),
        ("0 0 * * * ; rm -rf /", "5-field cron expression"),
    ],
)
def test_misshapen_schedules_are_refused_with_an_example(text: str, says: str) -> None:
    """The cheap check (run by the bootstrap) names the problem and shows what to write."""
    with pytest.raises(ScheduleError) as caught:
        schedules.check_syntax(text)
    assert says in str(caught.value)
    assert 'schedule = "*/15 * * * *"' in str(caught.value)


@pytest.mark.parametrize("text", ["61 * * * *", "0 25 * * *", "0 0 31 2 *", "0 0 * 13 *"])
def test_out_of_range_cron_values_are_caught_by_the_full_parse(text: str) -> None:
    """Values only cronsim can judge pass the syntax check and fail parse() clearly."""
    schedules.check_syntax(text)
    with pytest.raises(ScheduleError, match="not a valid cron expression"):
        schedules.parse(text, None, "UTC")


def test_an_unknown_zone_is_refused() -> None:
    """A time zone the machine does not know is an error naming it, with an example."""
    with pytest.raises(ScheduleError, match=r"Mars/Olympus.*IANA"):
        schedules.parse("@daily", None, "Mars/Olympus")


def test_a_job_in_the_hour_dst_skips_runs_once_right_after_the_gap() -> None:
    """Berlin springs forward at 02:00 on 2026-03-29: a 02:30 job runs at 03:00 CEST that
    day (01:00 UTC), then at 02:30 again."""
    assert _runs("30 2 * * *", BERLIN, "2026-03-28 12:00", 3) == [
        "2026-03-29 01:00:00",
        "2026-03-30 00:30:00",
        "2026-03-31 00:30:00",
    ]


def test_a_job_in_the_hour_dst_repeats_runs_once() -> None:
    """Berlin falls back at 03:00 on 2026-10-25: 02:30 happens twice, the job runs once
    (at the first, 00:30 UTC), and the next day at 02:30 CET (01:30 UTC)."""
    assert _runs("30 2 * * *", BERLIN, "2026-10-24 12:00", 2) == [
        "2026-10-25 00:30:00",
        "2026-10-26 01:30:00",
    ]


def test_an_hourly_job_across_fall_back_runs_every_real_hour() -> None:
    """``0 * * * *`` in New York across the 2026-11-01 fall-back: strictly increasing, an
    hour apart in UTC (the repeated hour is not a gap, nor a double run)."""
    runs = _runs("0 * * * *", NEW_YORK, "2026-10-31 23:30", 5)
    epochs = [datetime.strptime(r, "%Y-%m-%d %H:%M:%S").timestamp() for r in runs]
    assert all(b - a == 3600 for a, b in zip(epochs, epochs[1:]))


def test_day_of_month_and_day_of_week_are_ored_as_cron_does() -> None:
    """``0 0 13 * 5``: the 13th *or* a Friday (Debian cron); 2026-11-06 is a Friday."""
    assert _runs("0 0 13 * 5", "UTC", "2026-11-01 12:00", 3) == [
        "2026-11-06 00:00:00",
        "2026-11-13 00:00:00",
        "2026-11-20 00:00:00",
    ]


def test_macros_mean_what_cron_means() -> None:
    """``@daily`` is midnight in the zone, ``@weekly`` Sunday midnight."""
    assert _runs("@daily", BERLIN, "2026-12-01 12:00", 1) == ["2026-12-01 23:00:00"]
    assert _runs("@weekly", "UTC", "2026-12-01 12:00", 1) == ["2026-12-06 00:00:00"]


def test_every_counts_from_the_reference_time() -> None:
    """``every 2s`` is due two seconds after the last start."""
    schedule = schedules.parse("every 2s", 1.0, None)
    assert schedule.period == 2.0 and schedule.grace == 1.0
    assert schedule.next_after(1000.5) == 1002.5


def test_the_local_zone_has_its_dst_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no ``timezone``, ``TZ`` gives the local zone, with its DST rules (not a fixed
    offset): a 02:30 job in TZ=Europe/Berlin skips to 03:00 on the spring-forward day."""
    monkeypatch.setenv("TZ", BERLIN)
    schedule = schedules.parse("30 2 * * *", None, None)
    assert _utc(schedule.next_after(_at("2026-03-28 12:00", BERLIN))) == "2026-03-29 01:00:00"


def _config(tmp_path: Path, body: str) -> Settings:
    path = tmp_path / "tasktrace.toml"
    path.write_text(body)
    return load(str(path), env={})


def test_config_keeps_the_liveness_keys(tmp_path: Path) -> None:
    """``schedule``, ``grace``, ``timezone`` and ``max_duration`` reach the target."""
    settings = _config(
        tmp_path,
        '[[background_task]]\nfunction = "jobs:nightly"\nschedule = "0 3 * * *"\n'
        'grace = "10m"\ntimezone = "Europe/Berlin"\nmax_duration = "2h"\n',
    )
    (target,) = settings.background_tasks
    assert (target.schedule, target.grace, target.timezone, target.max_duration) == (
        "0 3 * * *",
        600.0,
        "Europe/Berlin",
        7200.0,
    )
    assert target.task_name == "jobs:nightly"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('schedule = "* * *"', "background_task[1].schedule: '* * *' is not a 5-field cron"),
        (
            "schedule = 5",
            "background_task[1].schedule: expected a non-empty string, got an integer",
        ),
        (
            'schedule = "@daily"\ngrace = "soon"',
            "background_task[1].grace: invalid duration 'soon'",
        ),
        ('max_duration = "-5m"', "background_task[1].max_duration: invalid duration"),
        ('grace = "5m"', "background_task[1].grace: only means something with a schedule"),
        ('schedule = "@daily"\ntimezone = "Europe/ Berlin"', "background_task[1].timezone:"),
    ],
)
def test_bad_liveness_keys_are_config_errors(tmp_path: Path, entry: str, says: str) -> None:
    """Each bad value is a problem naming the file, the key and the value, with an example."""
    with pytest.raises(ConfigurationError) as caught:
        _config(tmp_path, f'[[background_task]]\nfunction = "jobs:x"\n{entry}\n')
    text = "\n".join(caught.value.problems)
    assert says in text
    assert "tasktrace.toml" in text


def test_a_schedule_on_a_glob_is_refused(tmp_path: Path) -> None:
    """A schedule is for one task: a glob target with one is an error saying so."""
    with pytest.raises(ConfigurationError, match="glob that may match many"):
        _config(tmp_path, '[[background_task]]\nfunction = "jobs:*"\nschedule = "@daily"\n')


def test_function_traces_take_no_schedule(tmp_path: Path) -> None:
    """Only background tasks are scheduled: ``[[function_trace]]`` has no such key."""
    with pytest.raises(ConfigurationError, match="schedule"):
        _config(tmp_path, '[[function_trace]]\nfunction = "jobs:x"\nschedule = "@daily"\n')
