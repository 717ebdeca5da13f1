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
