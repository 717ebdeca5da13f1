r"""Text a program wrote, made safe to show on a terminal: one sanitiser for every human-facing
output (the ``report`` table, the ``console`` reporter, tasktrace's log lines).

Task names, groups, app names, error messages and a collector's error body may hold any
characters. Shown raw, an escape sequence clears the screen or retitles the window, a
carriage return overwrites the start of a line, and a bidi override reverses what follows.
:func:`clean` shows every such character as a visible escape (``\\x1b``, ``\\r``,
``\\u202e``) instead; the text is data, never terminal control. :func:`display_width` and
:func:`fit` pad and cut by terminal cells, not by code points, so wide East Asian
characters and combining marks keep table columns aligned. JSON output does not use this
module: its encoder escapes control characters already.

Only the standard library (``re`` and ``unicodedata``, imported on first use) is needed;
nothing here is on the bootstrap path.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Pattern

__all__ = ["clean", "display_width", "fit"]

#: What :func:`clean` escapes: C0 controls, DEL and C1 controls (ESC, CSI and OSC
#: introducers among them); the bidi marks, embeddings, overrides and isolates; the
#: Unicode line and paragraph separators; lone surrogates (unprintable, and they break the
#: stream's encoder).
_UNSAFE = "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
_NAMED: Dict[str, str] = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_patterns: Dict[bool, Pattern[str]] = {}

#: What :func:`fit` puts in place of the part of a text it cuts off.
ELLIPSIS = "\u2026"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object, *, keep_newlines: bool = False) -> str:
    r"""``str(text)`` with every terminal control character shown as a visible escape.

    Args:
        text: Anything; non-strings are converted with ``str()``.
        keep_newlines: Leave ``"\\n"`` as it is (for multi-line text such as a traceback,
            whose lines are then each safe). Carriage returns are escaped either way.

    Returns:
        The text, printable as it is: ESC becomes ``\\x1b``, CR ``\\r``, BEL ``\\x07``,
        U+202E ``\\u202e``, and so on. Text with nothing to escape is returned unchanged.
    """
    if not isinstance(text, str):
        text = str(text)
    pattern = _patterns.get(keep_newlines)
    if pattern is None:
        unsafe = _UNSAFE.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f") if keep_newlines else _UNSAFE
        pattern = _patterns[keep_newlines] = re.compile(unsafe)
    return pattern.sub(_escape, text)


def _char_width(char: str) -> int:
    import unicodedata

    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 2
    return 1


def display_width(text: str) -> int:
    """How many terminal cells ``text`` (already :func:`clean`) takes: wide and fullwidth
    East Asian characters take two, combining marks and format characters none."""
    if text.isascii():
        return len(text)
    return sum(map(_char_width, text))


def fit(text: str, width: int, *, right: bool = False, limit: Optional[int] = None) -> str:
    """``text`` padded with spaces to ``width`` cells (on the left if ``right``).

    Args:
        text: Text already made safe with :func:`clean`.
        width: The column's width in cells.
        right: Align right (numbers) instead of left.
        limit: Cut ``text`` longer than this many cells, ending it with an ellipsis; None
            (the default) never cuts. Pass the column's width to cut to it.

    Returns:
        The text, cut if need be, padded to exactly ``max(width, its width)`` cells.
    """
    if limit is not None and display_width(text) > limit:
        kept = []
        used = 0
        for char in text:
            cells = _char_width(char)
            if used + cells > limit - 1:
                break
            kept.append(char)
            used += cells
        text = "".join(kept) + ELLIPSIS
    padding = " " * max(0, width - display_width(text))
    return padding + text if right else text + padding
