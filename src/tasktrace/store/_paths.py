"""Where the store is: the default path, ``TASKTRACE_DB`` and ``[reporter] path`` resolved in
one function, used by the sqlite reporter and by ``report`` alike."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import (
    Optional,
)

from tasktrace.environment import TASKTRACE_DB

#: How long a connection waits for another process's write lock by default.
BUSY_TIMEOUT_MS = 5000

#: The environment variable naming the database (also read by the config loader).
DB_ENV_VAR = TASKTRACE_DB


def default_db_path(environ: Optional[Mapping[str, str]] = None) -> str:
    """``$XDG_DATA_HOME/tasktrace/tasktrace.db``, else ``~/.local/share/tasktrace/tasktrace.db``.

    This is the path used when neither ``[reporter] path`` nor ``TASKTRACE_DB`` is set.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return os.path.abspath(os.path.expanduser(os.path.join(base, "tasktrace", "tasktrace.db")))


def resolve_db_path(path: Optional[str], environ: Optional[Mapping[str, str]] = None) -> str:
    """``path`` (``~`` expanded, made absolute), else ``$TASKTRACE_DB``, else the default."""
    env = os.environ if environ is None else environ
    chosen = path or env.get(DB_ENV_VAR) or default_db_path(env)
    return os.path.abspath(os.path.expanduser(chosen))
