"""The exceptions tasktrace raises, in one place so callers can catch them precisely.

The tree::

    TaskTraceError                 every error tasktrace raises on purpose
    +-- ConfigurationError         a config file, variable or flag is wrong
    +-- TargetError                a "module:object.path" target cannot be resolved
    +-- ReporterError              a reporter could not be built from its settings
    +-- StoreError                 the SQLite store's file cannot be used (``path``,
                                   ``problem``: a directory, unreadable, not SQLite,
                                   corrupt, not a tasktrace store, schema too new)

tasktrace never raises into instrumented code because of its own failure (SPEC 2.8):
these exceptions come only from explicit calls such as ``initialize()`` or
``wrap_background_task()`` and from the ``tasktrace-admin`` commands.
"""

from __future__ import annotations

from collections.abc import Sequence


class TaskTraceError(Exception):
    """Base class of every error tasktrace raises."""


class ConfigurationError(TaskTraceError):
    """The configuration is invalid.

    ``problems`` lists every problem found (the parser collects them all instead of
    stopping at the first), each already phrased as a message naming the file, the key
    and the fix. ``str()`` joins them one per line.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


class TargetError(TaskTraceError):
    """A ``module:object.path`` target does not name an existing object."""


class ReporterError(TaskTraceError):
    """A reporter could not be created from its settings."""


class StoreError(TaskTraceError):
    """The file named as the SQLite store cannot be used as one.

    ``path`` is the file; ``problem`` says what is wrong with it (``"is a directory, not
    a file"``, ``"is not a SQLite database"``, ``"is a SQLite database but not a tasktrace
    store ..."``, ...) and ``fix`` what to do. ``str()`` is one line: path, problem, fix.
    """

    def __init__(self, path: str, problem: str, fix: str = "") -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path} {problem}" + (f"; {fix}" if fix else ""))
