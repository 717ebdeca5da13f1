"""Tests for tasktrace.environment: variable names and their parsers."""

from __future__ import annotations

import pytest

from tasktrace import environment


def test_every_constant_is_its_own_name() -> None:
    """Each variable constant holds its own name and is listed in ALL_VARIABLES."""
    names = [n for n in dir(environment) if n.startswith(("TASKTRACE_", "OTEL_"))]
    assert names
    for name in names:
        assert getattr(environment, name) == name
        assert name in environment.ALL_VARIABLES


@pytest.mark.parametrize("text", ["1", "true", "TRUE", " yes ", "on"])
def test_parse_bool_true(text: str) -> None:
    """The usual spellings of true parse as True, any case, blanks ignored."""
    assert environment.parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", " off"])
def test_parse_bool_false(text: str) -> None:
    """The usual spellings of false parse as False."""
    assert environment.parse_bool(text) is False


def test_parse_bool_rejects_other_words() -> None:
    """Anything else raises ValueError saying what was expected and what was given."""
    with pytest.raises(ValueError, match=r"expected true or false.*'maybe'"):
        environment.parse_bool("maybe")


def test_parse_float() -> None:
    """Numbers parse; junk, nan and infinity raise ValueError naming the text."""
    assert environment.parse_float(" 2.5 ") == 2.5
    assert environment.parse_float("3") == 3.0
    for bad in ("abc", "nan", "inf", ""):
        with pytest.raises(ValueError, match="expected a"):
            environment.parse_float(bad)


def test_parse_list() -> None:
    """Comma-separated items are stripped and empty ones dropped; an empty list raises."""
    assert environment.parse_list(" sqlite , otlp,,") == ["sqlite", "otlp"]
    with pytest.raises(ValueError, match="comma-separated"):
        environment.parse_list(" , ")


def test_parse_headers_decodes_like_otel() -> None:
    """Headers are name=value pairs, percent-decoded, blanks and empty entries ignored."""
    parsed = environment.parse_headers("api-key=a%20b%3Dc , x-tenant=7,,")
    assert parsed == {"api-key": "a b=c", "x-tenant": "7"}


def test_parse_headers_errors_never_echo_values() -> None:
    """A malformed entry is named by position; the (secret) text is not in the message."""
    with pytest.raises(ValueError) as info:
        environment.parse_headers("ok=1,Bearer-SECRET-TOKEN")
    assert "entry 2" in str(info.value)
    assert "SECRET" not in str(info.value)
    with pytest.raises(ValueError, match="empty header name"):
        environment.parse_headers("=SECRET")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45.0), ("30m", 1800.0), ("2h", 7200.0), ("7d", 604800.0), (" 1.5H ", 5400.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations take s, m, h, d (any case), as report --since does."""
    assert environment.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7 days", "0d", "-1h", "1w", "d"])
def test_parse_duration_rejects_what_is_not_one(text: str) -> None:
    """A bare number, another unit, zero or a sign is refused with the accepted forms."""
    with pytest.raises(ValueError, match=r"45s, 30m, 2h, 7d|greater than zero"):
        environment.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("500MB", 500_000_000),
        ("1GiB", 1024**3),
        ("200KiB", 200 * 1024),
        ("1.5 gb", 1_500_000_000),
        ("10B", 10),
        ("3mib", 3 * 1024**2),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    """Sizes take B, KB/KiB, MB/MiB, GB/GiB, case-insensitive; KB is 1000, KiB 1024."""
    assert environment.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1TB", "0MB", "-5MB", "MB"])
def test_parse_size_rejects_what_is_not_one(text: str) -> None:
    """Other units, zero and words are refused with the accepted forms."""
    with pytest.raises(ValueError, match=r"500MB, 1GiB|greater than zero"):
        environment.parse_size(text)
