"""tasktrace's own random numbers: trace and span ids, row sampling, retry jitter.

A private :class:`random.Random`, seeded from ``os.urandom`` and reseeded in every forked
child, so that nothing tasktrace does, in any thread, moves the program's global
``random`` sequence: a program that calls ``random.seed(42)`` gets the same numbers with
and without tasktrace. Its methods are bound once; they are implemented in C and safe to
call from several threads.
"""

from __future__ import annotations

import random as _random_module

from tasktrace import _fork

_source = _random_module.Random()

#: ``getrandbits(k)``: a non-negative integer of ``k`` random bits.
getrandbits = _source.getrandbits
#: ``randrange(n)``: an integer in ``range(n)``.
randrange = _source.randrange
#: ``random()``: a float in ``[0, 1)``.
random = _source.random
#: ``sample(population, k)``: ``k`` distinct elements chosen at random.
sample = _source.sample


def _reseed() -> None:
    # A child must not repeat its parent's ids (or its siblings'): fresh entropy.
    _source.seed()


_fork.register(after_in_child=_reseed)
