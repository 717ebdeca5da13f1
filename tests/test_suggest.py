"""tasktrace._suggest: the one "did you mean"."""

from __future__ import annotations

from tasktrace._suggest import close_matches, did_you_mean


def test_close_names_are_suggested_closest_first() -> None:
    """Close names are suggested, the closest first, joined with "or"."""
    assert did_you_mean("harvest_intervl", ["harvest_interval", "buffer_size"]) == (
        "did you mean 'harvest_interval'?"
    )
    assert close_matches("runn", ["run", "runs", "rune", "zzz"], n=3)[0] in {"run", "runs", "rune"}
    assert did_you_mean("runn", ["run", "runs"], n=2) == "did you mean 'run' or 'runs'?"


def test_nothing_close_says_nothing() -> None:
    """With nothing close (or no candidates) there is no suggestion at all."""
    assert did_you_mean("xyz", ["harvest_interval"]) == ""
    assert did_you_mean("a", []) == ""
