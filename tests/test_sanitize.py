"""Tests for tasktrace._sanitize: text a program wrote, made safe for a terminal."""

from __future__ import annotations

import pytest

from tasktrace._sanitize import clean, display_width, fit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jobs:send", "jobs:send"),
        ("\x1b[2J\x1b[Hcleared", "\\x1b[2J\\x1b[Hcleared"),
        ("\x1b]0;owned\x07title", "\\x1b]0;owned\\x07title"),
        ("ok\rFAKE", "ok\\rFAKE"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("del\x7f c1\x9b31m", "del\\x7f c1\\x9b31m"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("iso\u2066late\u2069 sep\u2028", "iso\\u2066late\\u2069 sep\\u2028"),
        ("lone \udc80", "lone \\udc80"),
        ("caf\u00e9 \u4e2d\u6587 e\u0301", "caf\u00e9 \u4e2d\u6587 e\u0301"),
    ],
)
def test_clean_escapes_terminal_controls(text: str, expected: str) -> None:
    """Controls, ESC sequences, CR, BEL, DEL, C1 and bidi marks become visible escapes."""
    assert clean(text) == expected


def test_clean_keeps_newlines_when_asked_and_converts_non_strings() -> None:
    """keep_newlines leaves line breaks (not CR); non-strings go through str()."""
    assert clean("line1\nline2\r\x1b", keep_newlines=True) == "line1\nline2\\r\\x1b"
    assert clean(42) == "42"


def test_display_width_counts_cells() -> None:
    """Wide East Asian characters take two cells, combining marks none."""
    assert display_width("abc") == 3
    assert display_width("\u4e2d\u6587") == 4
    assert display_width("e\u0301") == 1
    assert display_width("\uff21") == 2  # fullwidth A


def test_fit_pads_and_cuts_by_cells() -> None:
    """fit pads to the column width in cells and cuts over-long text with an ellipsis."""
    assert fit("\u4e2d", 4) == "\u4e2d  "
    assert fit("7", 3, right=True) == "  7"
    assert fit("abcdef", 0, limit=4) == "abc\u2026"
    cut = fit("\u4e2d\u6587\u5b57", 0, limit=4)
    assert cut == "\u4e2d\u2026" and display_width(cut) == 3
    assert fit("abc", 0, limit=3) == "abc"
