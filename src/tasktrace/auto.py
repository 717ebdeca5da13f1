"""``import tasktrace.auto``: what the launcher's bootstrap does, from inside a program.

For places where wrapping the command line is awkward (Jupyter, debuggers, ``uv run``):
importing this module reads the configuration and installs the import hooks. It is
idempotent, and a no-op when the launcher has already initialized this process. A bad
configuration is one line on stderr (the program continues uninstrumented) unless
``TASKTRACE_STRICT=1``, which raises ``ConfigurationError``.
"""

from __future__ import annotations

import os
import sys

from tasktrace.agent import initialize
from tasktrace.exceptions import TaskTraceError


def _auto() -> None:
    try:
        initialize()
    except TaskTraceError as exc:
        if os.environ.get("TASKTRACE_STRICT", "").lower() in ("1", "true", "yes", "on"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"tasktrace: {first}; running uninstrumented\n")


_auto()
