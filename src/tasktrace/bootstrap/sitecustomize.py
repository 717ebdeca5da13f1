"""Instrument a program started by ``tasktrace-admin run-program``: chain, then initialize.

Python imports ``sitecustomize`` at start-up from the first directory on ``sys.path`` that
has one; the launcher puts this file's directory first on ``PYTHONPATH``. This module:

1. runs the program's own ``sitecustomize``, if one exists further down ``sys.path``;
2. checks that this is the Python the launcher was run with (another interpreter, e.g. a
   system ``python3`` started by a virtualenv's program, is left alone; it says so on
   stderr only when ``TASKTRACE_STARTUP_DEBUG`` is set);
3. calls ``tasktrace.initialize()``, which reads the config and installs import hooks.

It never writes to stdout and never breaks the program: any error is one line on stderr
and the program runs uninstrumented, unless ``TASKTRACE_STRICT=1`` makes it fatal (exit
status 1, before the program starts). Nothing heavy is imported here: wrapt, httpx,
asyncio and sqlite3 load only when a target module is imported or a task is recorded.
"""

import os
import sys


def _debug(message: str) -> None:
    if os.environ.get("TASKTRACE_STARTUP_DEBUG", "").lower() not in ("", "0", "false", "no"):
        sys.stderr.write(f"tasktrace: {message}\n")


def _chain_user_sitecustomize() -> None:
    """Run the next ``sitecustomize`` on ``sys.path`` (the program's own), if any."""
    import importlib.machinery

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    _debug(f"running the program's own sitecustomize from {spec.origin}")
    import importlib.util  # only now: it costs a couple of milliseconds at every start

    module = importlib.util.module_from_spec(spec)
    # The program's module takes over the name, as if it had been imported directly.
    ours = sys.modules.get("sitecustomize")
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - as Python does for a failing sitecustomize: say it and carry on
        # Python itself would print this and carry on; do the same.
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        sys.stderr.write(f"Error in sitecustomize ({spec.origin}): {type(exc).__name__}: {exc}\n")


def _same_python() -> bool:
    """Whether this interpreter is the one the launcher ran with."""
    expected = os.environ.get("TASKTRACE_BOOTSTRAP_PYTHON")
    if not expected:
        return True  # put on PYTHONPATH by hand: trust it
    here = f"{os.path.realpath(sys.prefix)}|{sys.version_info[0]}.{sys.version_info[1]}"
    if expected == here:
        return True
    _debug(
        f"not instrumenting {sys.executable}: it is not the Python tasktrace-admin ran with "
        f"({expected.split('|')[0]}); install tasktrace into this Python to instrument it"
    )
    return False


def _bootstrap() -> None:
    try:
        _chain_user_sitecustomize()
    except Exception as exc:  # never let chaining break the program  # noqa: BLE001
        sys.stderr.write(f"tasktrace: could not run the program's sitecustomize: {exc}\n")
    if not _same_python():
        return
    # The config's tables become many small objects (thousands for a large target table),
    # and the collections they would trigger find no garbage: reading them with the
    # collector paused costs a third less. Only our own start-up runs meanwhile.
    import gc  # built in: free

    collecting = gc.isenabled()
    gc.disable()
    try:
        import tasktrace

        tasktrace.initialize()
        _debug(f"initialized in pid {os.getpid()}")
    except Exception as exc:  # noqa: BLE001 - the bootstrap never breaks the program (the failure line says why)
        from tasktrace.bootstrap import failure_line, strict_mode

        if strict_mode():
            sys.stderr.write(failure_line(exc) + "\n")
            sys.stderr.write("tasktrace: TASKTRACE_STRICT is set: not starting the program\n")
            sys.stderr.flush()
            os._exit(1)
        sys.stderr.write(failure_line(exc) + "; running uninstrumented\n")
    finally:
        if collecting:
            gc.enable()


_bootstrap()
