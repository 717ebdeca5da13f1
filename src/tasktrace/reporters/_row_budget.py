"""Which transactions the SQLite store keeps as rows: a budget per task name and minute.

The store's exact metrics count every transaction and its histograms time every one, so
rows are what the traces and errors views show, not what ``report`` counts: a sample of
them serves as well as all of them, and only the sample's size decides how fast the file
grows. :class:`RowBudget` bounds it in *time*, whatever the program's task rate and
however often it harvests (a busy program harvests many times a second, when its buffer
fills): per (app, name, group), at most ``per_minute`` errorless rows a minute, and apart
from them at most ``errors_per_minute`` errored ones (an error storm must not fill the
disk either; the errors' counts stay exact in the metrics). A quiet name, below its
budget, keeps every row.

How the budget is spent, and why so. Time is cut into *slots* of ``slot_seconds`` (the
harvest interval: at the default pace every harvest closes one). Each key and kind
(errorless, errored) has a token bucket that refills at ``per_minute / 60`` rows a
second and holds at most one minute's worth (it starts full, so a short burst of a
quiet name is kept whole). When a key's slot opens, its capacity is what the bucket
will hold by the slot's end; the slot then keeps a *uniform random sample* of every
record of that key offered during the slot, whatever the number of harvests it spans
(reservoir sampling, Vitter's Algorithm L, which draws random numbers only for the records
it takes, so the work per harvest is per *kept* record, not per record), and the sample
is written, in the order recorded, with the harvest that closes the slot. So:

* the sample is unbiased within each slot (every record of the slot has the same chance),
  and spread over time: a steady busy name gets the same share in every slot, rather than
  the whole minute's budget in its first harvest;
* rows go to the store in one block per key and slot, not one per harvest, which keeps
  the blocks' own overhead bounded too;
* rows wait at most one slot before they are written (``take_all`` hands them over at
  once, for a flush or a shutdown, keeping of an early-closed slot only what the bucket
  holds by then: a uniform choice among its sample); they are samples, which the delivery
  ledger does not count (the metrics do), so a crash loses at most a slot of samples,
  never a count;
* why not simpler: a fixed share per harvest would write a block per harvest (each block
  costs more than its few rows at many harvests a second) and, spent first come first
  served, would give the whole minute to its first harvests; a probability estimated
  from the last minute's rate would overshoot whenever the rate rises.

A slot opened by a harvest starts at the previous harvest (its records came after it),
so at the default pace, one harvest per ``slot_seconds``, each harvest's slot has ended
by the time it is offered, and its rows are written with it, as before. A rounding up
of a fraction of a row is owed to the bucket, so the long-run pace is the limit exactly.

Everything that is per record runs in C (``itemgetter``, ``compress``, slicing); Python
work is per key, per harvest and per kept record. The random numbers come from
tasktrace's own source (:mod:`tasktrace._rng`), never the program's ``random``.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Sequence
from itertools import compress
from typing import Callable, Dict, List, Optional, Tuple

from tasktrace import _rng
from tasktrace.records import TransactionRecord, errors_of, same_task, task_key_of

__all__ = ["RowBudget"]

_Key = Tuple[str, str, str]


class _Slot:
    """One key's and kind's reservoir for the slot now open (Algorithm L)."""

    __slots__ = ("capacity", "ends", "items", "next_taken", "opened", "seen", "weight")

    def __init__(self, capacity: int, opened: float, ends: float) -> None:
        self.capacity = capacity
        self.opened = opened
        self.ends = ends
        #: (position in the slot, record), at most ``capacity`` of them.
        self.items: List[Tuple[int, TransactionRecord]] = []
        #: Records offered so far.
        self.seen = 0
        self.weight = 0.0
        #: The position of the next record to take once the reservoir is full.
        self.next_taken = 0

    def offer(self, records: Sequence[TransactionRecord]) -> None:
        n = len(records)
        first = self.seen
        items = self.items
        capacity = self.capacity
        if capacity <= 0:
            self.seen += n
            return
        room = capacity - len(items)
        if room > 0:
            taken = records[:room]
            items.extend(zip(range(first, first + len(taken)), taken))
            if len(items) == capacity:
                self.weight = math.exp(math.log(_random_open()) / capacity)
                self.next_taken = first + len(taken) + self._skip()
        if len(items) == capacity:
            end = first + n
            while self.next_taken < end:
                position = self.next_taken
                items[_rng.randrange(capacity)] = (position, records[position - first])
                self.weight *= math.exp(math.log(_random_open()) / capacity)
                self.next_taken = position + 1 + self._skip()
        self.seen += n

    def _skip(self) -> int:
        """Records to pass over before the next one taken (Algorithm L)."""
        weight = self.weight
        if weight >= 1.0:  # (rounding: no record would ever be taken again)
            return 1 << 62
        return math.floor(math.log(_random_open()) / math.log1p(-weight))

    def kept(self) -> List[TransactionRecord]:
        """The sample, in the order the records were offered."""
        return [record for _, record in sorted(self.items, key=operator.itemgetter(0))]


class _Bucket:
    """Tokens (rows) of one key and kind: refilled at ``rate`` a second, up to ``size``."""

    __slots__ = ("since", "tokens")

    def __init__(self, size: float, now: float) -> None:
        self.tokens = size
        self.since = now


class RowBudget:
    """The rows of one process's harvests that the store keeps (see the module docstring).

    Args:
        per_minute: Errorless rows kept per (app, name, group) and minute; 0 keeps all.
        errors_per_minute: Errored rows kept per key and minute; 0 keeps all.
        slot_seconds: The length of a slot (the harvest interval).
        clock: Seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        per_minute: int,
        errors_per_minute: int,
        slot_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = (max(0, per_minute), max(0, errors_per_minute))
        self._slot_seconds = max(0.001, float(slot_seconds))
        self._clock = clock
        #: Per (key, errored): the open slot, and the token bucket.
        self._slots: Dict[Tuple[_Key, bool], _Slot] = {}
        self._buckets: Dict[Tuple[_Key, bool], _Bucket] = {}
        #: Records of unlimited kinds, passed straight through.
        self._through: List[TransactionRecord] = []
        #: When the previous harvest was offered: this harvest's records came after it.
        self._last_offer: Optional[float] = None
        #: When this harvest was offered.
        self._now = 0.0

    @property
    def unlimited(self) -> bool:
        """True if every row is kept (both limits 0)."""
        return self._limits == (0, 0)

    def offer(self, records: Sequence[TransactionRecord]) -> None:
        """Offer a harvest's records (in the order recorded)."""
        if not records:
            return
        if self.unlimited:
            self._through.extend(records)
            return
        now = self._clock()
        # A slot opened by this harvest starts where the harvest's records began, at the
        # previous harvest (for the first, a slot ago): at the default pace, one harvest
        # a slot, the slot then ends by this harvest, whose rows are written at once.
        start = now - self._slot_seconds if self._last_offer is None else self._last_offer
        self._last_offer = now
        self._now = now
        if same_task(records):
            self._offer_key(task_key_of(records[0]), records, start)
            return
        keys = list(map(task_key_of, records))
        for key in dict.fromkeys(keys):
            self._offer_key(key, list(compress(records, map(key.__eq__, keys))), start)

    def _offer_key(self, key: _Key, records: Sequence[TransactionRecord], start: float) -> None:
        flags = list(map(errors_of, records))
        errorless = flags.count(())
        if errorless == len(records):
            self._offer_kind(key, False, records, start)
            return
        if errorless:
            plain = list(map(operator.not_, flags))
            self._offer_kind(key, False, list(compress(records, plain)), start)
        self._offer_kind(key, True, list(compress(records, map(bool, flags))), start)

    def _offer_kind(
        self, key: _Key, errored: bool, records: Sequence[TransactionRecord], start: float
    ) -> None:
        limit = self._limits[errored]
        if limit == 0:
            self._through.extend(records)
            return
        slot = self._slots.get((key, errored))
        if slot is None:
            slot = self._open(key, errored, limit, start)
        slot.offer(records)

    def _open(self, key: _Key, errored: bool, limit: int, start: float) -> _Slot:
        bucket = self._buckets.get((key, errored))
        if bucket is None:  # (full, as of now: no credit for the time before this key)
            bucket = self._buckets[(key, errored)] = _Bucket(float(limit), self._now)
        # (A slot lasts at least until this harvest: its records came until now.)
        ends = max(start + self._slot_seconds, self._now)
        # What the bucket will hold by the slot's end (at most a minute's worth); the
        # fraction of a row is kept with that chance, so the rate is exact on average.
        room = min(float(limit), bucket.tokens + (ends - bucket.since) * limit / 60.0)
        capacity = math.floor(room)
        if capacity < 0:
            capacity = 0
        elif _rng.random() < room - capacity:
            capacity += 1
        slot = self._slots[(key, errored)] = _Slot(capacity, start, ends)
        return slot

    def _close(self, where: Tuple[_Key, bool], now: float) -> List[TransactionRecord]:
        slot = self._slots.pop(where)
        limit = self._limits[where[1]]
        bucket = self._buckets[where]
        tokens = min(float(limit), bucket.tokens + (now - bucket.since) * limit / 60.0)
        if now < slot.ends and len(slot.items) > tokens:
            # Closed early (a flush): the slot's capacity counted on refills to come, so
            # keep only what the bucket holds now, a uniform choice among the sample.
            allowed = max(0, math.floor(tokens))
            if _rng.random() < tokens - allowed:
                allowed += 1
            slot.items = [slot.items[i] for i in _rng.sample(range(len(slot.items)), allowed)]
        kept = slot.kept()
        # (A row kept by rounding up is owed: tokens may go below zero, so the long-run
        # pace is the limit exactly.)
        bucket.tokens = tokens - len(kept)
        bucket.since = now
        return kept

    def take_due(self, now: Optional[float] = None) -> Tuple[TransactionRecord, ...]:
        """The rows of the slots that have ended (and of unlimited kinds), to be written
        now; buckets idle for a minute or more (full again) are forgotten."""
        now = self._clock() if now is None else now
        rows, self._through = self._through, []
        for where in [w for w, slot in self._slots.items() if slot.ends <= now]:
            rows.extend(self._close(where, now))
        self._forget_idle(now)
        return tuple(rows)

    def take_all(self) -> Tuple[TransactionRecord, ...]:
        """Every row held, slots closed early (a flush or a shutdown)."""
        now = self._clock()
        rows, self._through = self._through, []
        for where in list(self._slots):
            rows.extend(self._close(where, now))
        return tuple(rows)

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) <= len(self._slots):
            return
        for where in [
            w
            for w, bucket in self._buckets.items()
            if w not in self._slots and now - bucket.since >= 60.0
        ]:
            del self._buckets[where]

    def held(self) -> int:
        """Rows held in open slots."""
        return sum(len(slot.items) for slot in self._slots.values()) + len(self._through)


def _random_open() -> float:
    """A random float in (0, 1): ``log`` of it is finite."""
    value = _rng.random()
    while value == 0.0:
        value = _rng.random()
    return value
