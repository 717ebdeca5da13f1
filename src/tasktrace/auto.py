"""``import tasktrace.auto``: what the launcher's bootstrap does, from inside a program.

For places where wrapping the command line is awkward (Jupyter, debuggers, ``uv run``):
importing this module reads the configuration and installs the import hooks. It is
idempotent, and a no-op when the launcher has already initialized this process. A bad
configuration is one line on stderr (the program continues uninstrumented) unless
``TASKTRACE_STRICT=1``, which raises ``ConfigurationError``.
"""

from __future__ import annotations

import sys

from tasktrace.agent import initialize
from tasktrace.bootstrap import failure_line, strict_mode
from tasktrace.exceptions import TaskTraceError


def _auto() -> None:
    try:
        initialize()
    except TaskTraceError as exc:
        if strict_mode():
            raise
        sys.stderr.write(failure_line(exc) + "; running uninstrumented\n")


_auto()
