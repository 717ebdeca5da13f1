"""The directory the launcher puts first on ``PYTHONPATH`` so Python runs our sitecustomize.

Only ``sitecustomize.py`` lives here (plus this file): everything in this directory is
importable as a top-level module in the instrumented program.
"""

import os

#: The directory to put on ``PYTHONPATH``.
BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(__file__))


def strict_mode() -> bool:
    """Whether ``TASKTRACE_STRICT`` makes a failed start-up fatal (a bad value: no)."""
    from tasktrace.environment import TASKTRACE_STRICT, parse_bool

    try:
        return parse_bool(os.environ.get(TASKTRACE_STRICT, "") or "0")
    except ValueError:
        return False


def failure_line(exc: BaseException) -> str:
    """The one stderr line a failed start-up prints (every problem is in validate-config)."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    more = len(getattr(exc, "problems", ())) - 1
    suffix = f" (and {more} more; run 'tasktrace-admin validate-config')" if more > 0 else ""
    return f"tasktrace: {first}{suffix}"
