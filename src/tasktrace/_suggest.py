"""The one "did you mean" of tasktrace: close matches for a misspelt key, target or name.

``difflib`` is imported only when there is a mistake to explain.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import List


def close_matches(word: str, choices: Iterable[object], n: int = 1) -> List[str]:
    """Up to ``n`` of ``choices`` (as strings) that look like ``word``, closest first."""
    import difflib

    return difflib.get_close_matches(word, [str(c) for c in choices], n=n, cutoff=0.6)


def did_you_mean(word: str, choices: Iterable[object], n: int = 1) -> str:
    """``"did you mean 'a'?"`` (or ``'a' or 'b'``) for ``word``, or ``""`` if nothing is
    close; callers put it in their own message."""
    close = close_matches(word, choices, n)
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
