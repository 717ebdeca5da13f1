"""The exit status of a program ended by Ctrl-C (SIGINT) or SIGHUP is what it would be
without tasktrace, and its finished tasks are delivered first, in real subprocesses."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest
from _faults import clean_env, run_python, stored_calls, write_program

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    return clean_env(tmp_path, **{"TASKTRACE_HARVEST_INTERVAL": "60", **extra})


# -- Ctrl-C -------------------------------------------------------------------------------


def test_keyboard_interrupt_after_a_task_exits_by_sigint(tmp_path: Path) -> None:
    """The issue's one-liner: the first harvest runs at exit (and imports the reporters),
    yet the process still dies of SIGINT (130 in a shell), and the task is stored."""
    code = "import tasktrace; tasktrace.background_task()(lambda: 1)(); raise KeyboardInterrupt"
    run = run_python(["-c", code], _env(tmp_path))
    assert run.returncode == -signal.SIGINT, run.stderr
    assert run.stderr.rstrip().endswith("KeyboardInterrupt"), run.stderr
    assert stored_calls(tmp_path / "tasks.db") == 1


def test_keyboard_interrupt_after_a_harvest_exits_by_sigint(tmp_path: Path) -> None:
    """A harvest before the interrupt and tasks after it: still SIGINT, all delivered."""
    prog = write_program(
        tmp_path,
        """
        import tasktrace

        @tasktrace.background_task()
        def work(i):
            return i

        for i in range(5):
            work(i)
        assert tasktrace.flush(10)
        for i in range(3):
            work(i)
        raise KeyboardInterrupt
        """,
    )
    run = run_python([str(prog)], _env(tmp_path))
    assert run.returncode == -signal.SIGINT, run.stderr
    assert stored_calls(tmp_path / "tasks.db") == 8


def test_real_sigint_during_a_task_exits_by_sigint(tmp_path: Path) -> None:
    """SIGINT while a task runs: the task is recorded (with the interrupt), delivered, and
    the process dies of SIGINT, under the launcher as well."""
    prog = write_program(
        tmp_path,
        """
        import os, signal, time
        import tasktrace

        @tasktrace.background_task()
        def work(i):
            if i == 3:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(10)  # interrupted
            return i

        for i in range(10):
            work(i)
        """,
    )
    for launcher in (False, True):
        db = tmp_path / f"tasks-{launcher}.db"
        run = run_python([str(prog)], _env(tmp_path, TASKTRACE_DB=str(db)), launcher=launcher)
        assert run.returncode == -signal.SIGINT, run.stderr
        assert stored_calls(db) == 4


def test_a_handled_interrupt_keeps_the_programs_own_status(tmp_path: Path) -> None:
    """A program that catches KeyboardInterrupt and exits normally keeps its status."""
    prog = write_program(
        tmp_path,
        """
        import sys
        import tasktrace

        try:
            tasktrace.background_task()(lambda: 1)()
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(4)
        """,
    )
    run = run_python([str(prog)], _env(tmp_path))
    assert run.returncode == 4, run.stderr
    assert stored_calls(tmp_path / "tasks.db") == 1


def test_plain_python_sets_the_baseline() -> None:
    """Without tasktrace, an unhandled KeyboardInterrupt exits by SIGINT (the baseline)."""
    proc = subprocess.run(
        [sys.executable, "-c", "raise KeyboardInterrupt"], capture_output=True, timeout=30
    )
    assert proc.returncode == -signal.SIGINT


# -- SIGHUP -------------------------------------------------------------------------------

_HUP_PROGRAM = """
import signal, sys, time
import tasktrace

if sys.argv[1] == "own":
    signal.signal(signal.SIGHUP, lambda signum, frame: print("reload", flush=True))
elif sys.argv[1] == "ignored":
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

@tasktrace.background_task()
def work(i):
    return i

for i in range(7):
    work(i)
print("ready", flush=True)
for _ in range(100):
    time.sleep(0.02)
print("survived", flush=True)
"""


def _hang_up(tmp_path: Path, mode: str) -> Tuple[int, str, str]:
    """Run the program with SIGHUP at its default, send SIGHUP once it is ready."""
    prog = write_program(tmp_path, _HUP_PROGRAM)

    def default_sighup() -> None:  # even if pytest itself runs under nohup
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    proc = subprocess.Popen(
        [sys.executable, str(prog), mode],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sighup,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs SIGHUP")
def test_sighup_with_its_default_action_delivers_then_dies_of_sighup(tmp_path: Path) -> None:
    """SIGHUP at its default action: the finished tasks are stored, and the process still
    dies of SIGHUP."""
    returncode, out, err = _hang_up(tmp_path, "default")
    assert returncode == -signal.SIGHUP, err
    assert out == "" and "Traceback" not in err, err
    assert stored_calls(tmp_path / "tasks.db") == 7


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs SIGHUP")
def test_programs_own_sighup_handler_is_left_alone(tmp_path: Path) -> None:
    """A program's SIGHUP handler (say, reload) runs as before and the program goes on;
    its tasks are delivered at its normal exit."""
    returncode, out, err = _hang_up(tmp_path, "own")
    assert returncode == 0, err
    assert out == "reload\nsurvived\n", err
    assert stored_calls(tmp_path / "tasks.db") == 7


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs SIGHUP")
def test_ignored_sighup_stays_ignored(tmp_path: Path) -> None:
    """A program that ignores SIGHUP (as under nohup) keeps running."""
    returncode, out, err = _hang_up(tmp_path, "ignored")
    assert returncode == 0, err
    assert out == "survived\n", err
    assert stored_calls(tmp_path / "tasks.db") == 7
