"""Module-level targets for tests that need importable objects (pickling, spawn, wrap_*).

``multiprocessing`` with ``spawn`` re-imports the module a pickled function lives in, so
these cannot live in a test module's body or a fixture.
"""

from __future__ import annotations

from typing import Optional, Tuple

import tasktrace


@tasktrace.background_task()
def double(x: int) -> int:
    """Return twice ``x``."""
    return x * 2


@tasktrace.background_task()
def double_in_task(x: int) -> Tuple[int, Optional[str]]:
    """Twice ``x`` and the name of the transaction the call ran in."""
    txn = tasktrace.current_transaction()
    return x * 2, None if txn is None else txn.name


class Job:
    """A class with decorated methods of every kind."""

    def __init__(self, factor: int = 3) -> None:
        self.factor = factor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.factor == self.factor

    def __hash__(self) -> int:
        return hash(self.factor)

    @tasktrace.background_task()
    def run(self, x: int) -> int:
        """Multiply ``x`` by the factor."""
        return x * self.factor

    @tasktrace.background_task()
    @classmethod
    def make(cls, factor: int) -> Job:
        return cls(factor)

    @tasktrace.background_task()
    @staticmethod
    def add(a: int, b: int) -> int:
        return a + b

    class Nested:
        def work(self) -> str:
            return "nested"


def plain(x: int) -> int:
    """A function left undecorated, for wrap_background_task() to patch."""
    return x + 1


def plain_traced(x: int) -> int:
    """Another undecorated function, for wrap_function_trace() to patch."""
    return x - 1


class Patchable:
    """A class whose methods tests patch in place."""

    def method(self, x: int) -> int:
        return x

    @classmethod
    def cmethod(cls, x: int) -> int:
        return x

    @staticmethod
    def smethod(x: int) -> int:
        return x
