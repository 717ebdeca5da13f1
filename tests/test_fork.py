"""The one at-fork registration (tasktrace._fork): order, and no hook stops the others."""

from __future__ import annotations

import os
from typing import List

import pytest

from tasktrace import _fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python reports the failing hook's error as "Exception ignored", as for any at-fork hook.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_hooks_run_in_order_and_a_failing_one_does_not_stop_the_rest() -> None:
    """At-fork callbacks run in registration order; one that raises does not stop the rest."""
    calls: List[str] = []

    def failing() -> None:
        calls.append("failing")
        raise RuntimeError("a broken hook")

    hooks = [
        dict(before=lambda: calls.append("before-1"), after_in_parent=lambda: calls.append("p-1")),
        dict(before=failing, after_in_parent=failing),
        dict(before=lambda: calls.append("before-3"), after_in_parent=lambda: calls.append("p-3")),
    ]
    saved = (list(_fork._before), list(_fork._after_in_parent), list(_fork._after_in_child))
    try:
        for hook in hooks:
            _fork.register(**hook)  # type: ignore[arg-type]
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: tell the parent tasktrace's state
            os.write(write_end, b"child")
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as child:
            assert child.read() == b"child"
        os.waitpid(pid, 0)
    finally:
        _fork._before[:], _fork._after_in_parent[:], _fork._after_in_child[:] = saved
    # `before` hooks run in reverse order of registration, the others in order.
    assert calls == ["before-3", "failing", "before-1", "p-1", "failing", "p-3"]


def test_tasktrace_modules_register_here() -> None:
    """The per-process state of _rng, transaction and recorder is reset through this
    module, and no other module of tasktrace calls os.register_at_fork itself."""
    from pathlib import Path

    import tasktrace
    import tasktrace.recorder
    import tasktrace.transaction
    from tasktrace import _rng

    children = _fork._after_in_child
    assert _rng._reseed in children
    assert tasktrace.transaction._after_fork_in_child in children
    assert tasktrace.recorder._after_fork_in_child in children
    root = Path(tasktrace.__file__).parent
    callers = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "os.register_at_fork(" in path.read_text(encoding="utf-8")
    ]
    assert callers == ["_fork.py"]
