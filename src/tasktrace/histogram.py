"""Latency histograms with a bounded relative error: exact-to-1% percentiles of every call.

A :class:`Histogram` is an exponential histogram as OpenTelemetry defines it for OTLP
(``ExponentialHistogramDataPoint``): at scale ``s`` the base is ``b = 2 ** (2 ** -s)``,
and bucket ``i`` holds the values ``v`` with ``b ** i < v <= b ** (i + 1)`` (upper bounds
inclusive, as OTLP says), i.e. ``i = ceil(log2(v) * 2 ** s) - 1``. Values of 0 (and,
defensively, anything not a positive finite number) go to ``zero_count``. Buckets are
kept sparse (index -> count) and exported as OTLP wants them: ``offset`` (the lowest
index) and dense ``bucket_counts`` from there (:meth:`Histogram.positive_buckets`).

The error bound, which picks the scale. A bucket ``(L, L*b]`` is represented by the one
value ``m`` that minimises the worst relative error over the bucket: equalising
``m/L - 1`` and ``1 - m/(L*b)`` gives ``m = 2*L*b / (1 + b)`` (the harmonic mean of the
bounds), whose worst relative error is ``(b - 1) / (b + 1)``. At scale 5
(``b = 1.02190``) that is 1.08%, too much; at scale 6 (``b = 2 ** (1/64) = 1.010889``)
it is **0.5415%**, within the 1% asked with room for the float rounding of ``log`` at a
bucket's edge (a value within a few ulps of a bound may land in the neighbour bucket,
whose representative is then as close to it: the bound still holds). Scale 7 would halve
the error and double the buckets (about 128 per doubling of the latency instead of 64),
so :data:`SCALE` is 6. A nearest-rank quantile (the smallest recorded value such that at
least ``q`` of the values are less than or equal to it) lies in the bucket where the
cumulative count reaches the rank, so its estimate, that bucket's representative, is
within 0.5415% of it; clamping the estimate to the window's exact ``[min, max]`` (which
the caller knows) only brings it closer.

Merging two histograms adds their counts bucket by bucket, so the histogram of several
harvest windows or processes is exact (to the bucket) for all of them together. A
histogram of a coarser scale can be merged with a finer one: the finer is downscaled
(index ``>> (scale difference)``), as OTLP prescribes.

Recording is per chunk, not per value, and its per-value work runs in C
(``map(math.log2, ...)``, ``map(mul, ...)``, ``map(math.ceil, ...)``, ``Counter``): the
harvest thread that folds a harvest's durations shares the GIL with the program. Values
can also be handed over without any work per value (:meth:`Histogram.add_later`, one
list append): they are bucketed when the histogram is first read. The recorder uses that
so that its eviction path, which runs on the program's thread when the buffer is full,
does no bucketing.

The compact encoding (:meth:`Histogram.to_bytes`, :meth:`Histogram.from_bytes`), as the
store keeps it: a 20-byte little-endian header (``struct`` ``<BbBBiQI``: the format, 1;
the scale; the byte width of a count, 1, 2, 4 or 8; 1 if the counts are compressed,
else 0; the offset; the zero count; the number of counts), then the dense bucket counts
from the offset as unsigned little-endian integers of that width; compressed, when that
is smaller, as zlib of their byte planes (the first byte of every count, then the
second, ...). Decoding and merging are then C work (``zlib``,
``array.frombytes``, ``map(add, ...)`` over slices), which keeps ``report`` fast over
many windows (:func:`merge_encoded`); a harvest window of a busy task takes a few hundred
bytes, a quiet one a few dozen.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import add, mul
from typing import Dict, List, Optional, Tuple

__all__ = ["MAX_RELATIVE_ERROR", "SCALE", "Histogram", "merge_encoded"]

#: The scale of the histograms tasktrace records (see the module docstring).
SCALE = 6
#: The worst relative error of a value's representative at :data:`SCALE`: (b-1)/(b+1).
MAX_RELATIVE_ERROR = (2 ** (2.0**-SCALE) - 1) / (2 ** (2.0**-SCALE) + 1)

#: The encoding's format byte, and its header (see the module docstring).
_FORMAT = 1
_HEADER = struct.Struct("<BbBBiQI")
#: array typecodes of unsigned integers per byte width (``L`` may be 4 or 8 bytes wide).
_TYPECODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
#: Values handed over with add_later() beyond this many are bucketed at once, so that the
#: memory held for a histogram stays bounded when nobody reads it for a while.
_MAX_PENDING = 1 << 16


class Histogram:
    """An exponential histogram of positive durations (see the module docstring).

    Args:
        scale: The OTLP scale; the base is ``2 ** (2 ** -scale)``.
    """

    __slots__ = ("_counts", "_pending", "_pending_n", "scale", "zero_count")

    def __init__(self, scale: int = SCALE) -> None:
        #: The OTLP scale.
        self.scale = scale
        #: Values recorded as zero (0, or not a positive finite number).
        self.zero_count = 0
        self._counts: Dict[int, int] = {}
        self._pending: List[Sequence[float]] = []
        self._pending_n = 0

    # -- recording ---------------------------------------------------------------------

    def record_many(self, values: Sequence[float]) -> None:
        """Add ``values`` (seconds, or any unit: the histogram is scale-free)."""
        if not values:
            return
        # log2(v) * 2**scale: the product is exact (a power of two), and log2 is exact at
        # powers of two, so 1.0, 2.0, 0.5 ... land in the bucket they bound, as OTLP says.
        factor = 2.0**self.scale
        try:
            if min(values) > 0.0:
                indexes = Counter(map(math.ceil, map(mul, map(math.log2, values), repeat(factor))))
            else:
                indexes = self._with_zeros(values, factor)
        except (OverflowError, ValueError):  # inf or nan: one value at a time
            indexes = self._with_zeros(values, factor)
        counts = self._counts
        get = counts.get
        for upper, n in indexes.items():
            # ceil(log2(v) * 2**scale) is the bucket's upper index; the bucket is one less.
            counts[upper - 1] = get(upper - 1, 0) + n

    def _with_zeros(self, values: Sequence[float], factor: float) -> Counter[int]:
        positive = [v for v in values if v > 0.0 and v < math.inf]
        self.zero_count += len(values) - len(positive)
        return Counter(map(math.ceil, map(mul, map(math.log2, positive), repeat(factor))))

    def add_later(self, values: Sequence[float]) -> None:
        """Record ``values`` when the histogram is next read: one list append now (the
        caller must not change ``values`` afterwards)."""
        if not values:
            return
        self._pending.append(values)
        self._pending_n += len(values)
        if self._pending_n > _MAX_PENDING:
            self._settle()

    def _settle(self) -> None:
        """Bucket the values handed over with :meth:`add_later`."""
        pending = self._pending
        while pending:
            values = pending.pop()  # (atomic: a chunk is never bucketed twice)
            self.record_many(values)
        self._pending_n = 0

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this histogram (downscaling the finer of the two)."""
        self._settle()
        other._settle()
        if other.scale < self.scale:
            self._downscale(self.scale - other.scale)
        counts = self._counts
        get = counts.get
        shift = other.scale - self.scale
        for index, n in other._counts.items():
            index >>= shift
            counts[index] = get(index, 0) + n
        self.zero_count += other.zero_count

    def merged(self, other: Histogram) -> Histogram:
        """A new histogram holding both."""
        result = self.copy()
        result.merge(other)
        return result

    def without(self, other: Histogram) -> Histogram:
        """A new histogram of this one's values less ``other``'s, bucket by bucket, at the
        coarser scale of the two (``other`` must hold a subset of this one's values, e.g.
        the errored calls among all calls; a count that would go negative stays 0)."""
        result = self.copy()
        theirs = other.copy()
        if theirs.scale > result.scale:
            theirs._downscale(theirs.scale - result.scale)
        elif theirs.scale < result.scale:
            result._downscale(result.scale - theirs.scale)
        counts = result._counts
        for index, n in theirs._counts.items():
            left = counts.get(index, 0) - n
            if left > 0:
                counts[index] = left
            else:
                counts.pop(index, None)
        result.zero_count = max(0, result.zero_count - theirs.zero_count)
        return result

    def copy(self) -> Histogram:
        """An independent copy."""
        self._settle()
        result = Histogram(self.scale)
        result.zero_count = self.zero_count
        result._counts = dict(self._counts)
        return result

    def _downscale(self, by: int) -> None:
        merged: Dict[int, int] = {}
        get = merged.get
        for index, n in self._counts.items():
            index >>= by
            merged[index] = get(index, 0) + n
        self._counts = merged
        self.scale -= by

    # -- reading -----------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Every value recorded, zeros included."""
        self._settle()
        return self.zero_count + sum(self._counts.values())

    def buckets(self) -> List[Tuple[int, int]]:
        """The non-empty buckets as (index, count), ascending."""
        self._settle()
        return sorted(self._counts.items())

    def positive_buckets(self) -> Tuple[int, List[int]]:
        """OTLP's ``positive``: ``(offset, bucket_counts)``, dense from the lowest
        non-empty bucket (``(0, [])`` when there is none)."""
        pairs = self.buckets()
        if not pairs:
            return 0, []
        offset = pairs[0][0]
        dense = [0] * (pairs[-1][0] - offset + 1)
        for index, n in pairs:
            dense[index - offset] = n
        return offset, dense

    def bounds(self, index: int) -> Tuple[float, float]:
        """Bucket ``index``'s lower (exclusive) and upper (inclusive) bounds."""
        base = 2.0 ** (2.0**-self.scale)
        return base**index, base ** (index + 1)

    def representative(self, index: int) -> float:
        """The value standing for bucket ``index``: ``2*L*b / (1 + b)``, within
        :data:`MAX_RELATIVE_ERROR` of every value of the bucket (at :data:`SCALE`)."""
        base: float = 2.0 ** (2.0**-self.scale)
        upper: float = base ** (index + 1)
        return 2.0 * upper / (1.0 + base)

    def quantile(
        self, q: float, low: Optional[float] = None, high: Optional[float] = None
    ) -> Optional[float]:
        """The nearest-rank ``q`` quantile (``0 < q <= 1``), as its bucket's
        representative, clamped to ``[low, high]`` when given (the window's exact min and
        max); 0.0 if it falls among the zeros; None if the histogram is empty."""
        total = self.count
        if total == 0:
            return None
        rank = min(total, max(1, math.ceil(q * total)))
        if rank <= self.zero_count:
            value = 0.0
        else:
            seen = self.zero_count
            value = 0.0
            for index, n in self.buckets():
                seen += n
                if seen >= rank:
                    value = self.representative(index)
                    break
        if low is not None and value < low:
            value = low
        if high is not None and value > high:
            value = high
        return value

    # -- the compact encoding ------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The compact encoding (see the module docstring)."""
        offset, dense = self.positive_buckets()
        top = max(dense, default=0)
        width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
        body = array(_TYPECODES[width], dense)
        if not _LITTLE_ENDIAN_HOST:
            body.byteswap()
        payload = body.tobytes()
        packed = payload
        if len(payload) > 32:
            # Byte planes (every count's lowest bytes, then the next ones, ...): counts
            # differ mostly in their low bytes, so the high planes compress to nearly
            # nothing (a third smaller than the counts compressed as they are).
            packed = zlib.compress(b"".join(payload[i::width] for i in range(width)), 6)
        compressed = len(packed) < len(payload)
        header = _HEADER.pack(
            _FORMAT, self.scale, width, compressed, offset, self.zero_count, len(dense)
        )
        return header + (packed if compressed else payload)

    @classmethod
    def from_bytes(cls, data: bytes) -> Histogram:
        """Decode :meth:`to_bytes`' output.

        Raises:
            ValueError: ``data`` is not such an encoding.
        """
        scale, zero_count, offset, counts = _decode(data)
        result = cls(scale)
        result.zero_count = zero_count
        result._counts = dict(compress(zip(range(offset, offset + len(counts)), counts), counts))
        return result

    @classmethod
    def of(cls, values: Iterable[float], scale: int = SCALE) -> Histogram:
        """A histogram of ``values``."""
        result = cls(scale)
        result.record_many(list(values))
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        self._settle()
        other._settle()
        return (self.scale, self.zero_count, self._counts) == (
            other.scale,
            other.zero_count,
            other._counts,
        )

    __hash__ = None  # type: ignore[assignment]  # (mutable)

    def __repr__(self) -> str:
        return f"<Histogram scale={self.scale} count={self.count} buckets={len(self._counts)}>"


def _decode(data: bytes) -> Tuple[int, int, int, array[int]]:
    """(scale, zero_count, offset, dense counts) of an encoding.

    Raises:
        ValueError: ``data`` is not a histogram encoding.
    """
    try:
        fmt, scale, width, compressed, offset, zero_count, n = _HEADER.unpack_from(data)
        typecode = _TYPECODES[width]
        payload = data[_HEADER.size :]
        if compressed:
            planes = zlib.decompress(payload)
            if width > 1:  # the byte planes back into counts
                interleaved = bytearray(len(planes))
                for i in range(width):
                    interleaved[i::width] = planes[i * n : (i + 1) * n]
                payload = bytes(interleaved)
            else:
                payload = planes
    except (struct.error, KeyError, zlib.error) as exc:
        raise ValueError(f"not a tasktrace histogram encoding ({exc})") from exc
    counts = array(typecode)
    if fmt != _FORMAT or len(payload) != n * counts.itemsize:
        raise ValueError("not a tasktrace histogram encoding")
    counts.frombytes(payload)
    if not _LITTLE_ENDIAN_HOST:
        counts.byteswap()
    return scale, zero_count, offset, counts


def merge_encoded(encodings: Iterable[bytes]) -> Optional[Histogram]:
    """The merge of many :meth:`Histogram.to_bytes` encodings (None if there is none),
    with the per-bucket work in C: dense counts are added slice by slice.

    Raises:
        ValueError: one is not a histogram encoding.
    """
    decoded = [_decode(data) for data in encodings]
    if not decoded:
        return None
    scale = min(d[0] for d in decoded)
    result = Histogram(scale)
    pieces: List[Tuple[int, Sequence[int]]] = []
    for own_scale, zero_count, offset, counts in decoded:
        result.zero_count += zero_count
        if not counts:
            continue
        if own_scale != scale:  # (not written by this tasktrace: per bucket, in Python)
            finer = Histogram(own_scale)
            finer._counts = dict(zip(range(offset, offset + len(counts)), counts))
            finer._downscale(own_scale - scale)
            pieces.append(finer.positive_buckets())
        else:
            pieces.append((offset, counts))
    if pieces:
        low = min(offset for offset, _ in pieces)
        high = max(offset + len(piece) for offset, piece in pieces)
        total = [0] * (high - low)
        for offset, piece in pieces:
            start = offset - low
            end = start + len(piece)
            total[start:end] = map(add, total[start:end], piece)
        result._counts = dict(compress(zip(range(low, high), total), total))
    return result
