"""Tests for tasktrace._logging."""

from __future__ import annotations

from pathlib import Path


def test_log_lines_never_pass_terminal_controls(tmp_path: Path) -> None:
    """tasktrace's log lines show control characters of quoted text as escapes."""
    from tasktrace import _logging

    target = tmp_path / "log.txt"
    try:
        _logging.configure("warning", str(target))
        log = _logging.get_logger("tasktrace.test_sanitize")
        log.warning("tasktrace: task %s failed", "jobs:\x1b[2Jx\nFORGED WARNING line\u202e")
        try:
            raise ValueError("tb \x1b]0;t\x07")
        except ValueError:
            log.exception("tasktrace: %s", "boom\r")
    finally:
        _logging._reset_for_tests()
    text = target.read_text(encoding="utf-8")
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "jobs:\\x1b[2Jx\\nFORGED WARNING line\\u202e" in text
    assert "boom\\r" in text and "Traceback (most recent call last):\n" in text
