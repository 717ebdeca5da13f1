"""Tests for tasktrace.histogram: accuracy against exact nearest-rank percentiles, merging,
the compact encoding, and the OTLP view of the buckets."""

from __future__ import annotations

import math
import random
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasktrace import store
from tasktrace.histogram import MAX_RELATIVE_ERROR, SCALE, Histogram, merge_encoded

#: Durations as tasks have them: from a tenth of a microsecond to an hour, and zeros.
durations = st.one_of(
    st.floats(min_value=1e-7, max_value=3600.0, allow_nan=False, allow_infinity=False),
    st.just(0.0),
)
samples = st.lists(durations, min_size=1, max_size=400)
quantiles = st.floats(min_value=0.001, max_value=1.0)


def _exact(values: List[float], q: float) -> float:
    """The nearest-rank q quantile, as report computed it from every stored row."""
    result = store.percentile(sorted(values), q * 100.0)
    assert result is not None
    return result


def _close(estimate: float, exact: float) -> bool:
    if exact == 0.0:
        return estimate == 0.0
    # (A hair over the bound for the float rounding of a bucket's edge.)
    return abs(estimate - exact) <= exact * MAX_RELATIVE_ERROR * (1 + 1e-9)


def test_the_scale_gives_under_one_percent() -> None:
    """Scale 6 with the harmonic-mean representative: worst relative error 0.5415%."""
    assert SCALE == 6
    assert abs(MAX_RELATIVE_ERROR - 0.005415) < 1e-6
    assert MAX_RELATIVE_ERROR < 0.01


@settings(max_examples=300, deadline=None)
@given(samples, quantiles)
def test_quantiles_are_within_the_bound_of_the_exact_ones(values: List[float], q: float) -> None:
    """Any sample, any q: the estimate clamped to [min, max] is within 0.55% of the exact
    nearest-rank percentile (zeros exactly)."""
    histogram = Histogram.of(values)
    estimate = histogram.quantile(q, min(values), max(values))
    assert estimate is not None
    assert _close(estimate, _exact(values, q)), (estimate, _exact(values, q))


@settings(max_examples=100, deadline=None)
@given(samples)
def test_p50_and_p95_are_within_the_bound_without_clamping(values: List[float]) -> None:
    """Even without the window's min and max, p50 and p95 are within the bound."""
    histogram = Histogram.of(values)
    for q in (0.5, 0.95):
        estimate = histogram.quantile(q)
        assert estimate is not None and _close(estimate, _exact(values, q))


def test_quantiles_of_a_large_known_sample() -> None:
    """100,000 log-normal durations: every percentile from 1 to 100 within the bound."""
    rng = random.Random(5)
    values = [rng.lognormvariate(-7, 1.5) for _ in range(100_000)]
    histogram = Histogram.of(values)
    assert histogram.count == len(values)
    for pct in range(1, 101):
        estimate = histogram.quantile(pct / 100, min(values), max(values))
        assert estimate is not None and _close(estimate, _exact(values, pct / 100))


@settings(max_examples=200, deadline=None)
@given(samples, samples, samples)
def test_merging_equals_recording_everything(
    a: List[float], b: List[float], c: List[float]
) -> None:
    """Merged histograms (in memory or encoded) equal the histogram of all the values."""
    whole = Histogram.of(a + b + c)
    merged = Histogram.of(a)
    merged.merge(Histogram.of(b))
    merged.merge(Histogram.of(c))
    assert merged == whole
    assert Histogram.of(a).merged(Histogram.of(b)).merged(Histogram.of(c)) == whole
    encoded = [Histogram.of(part).to_bytes() for part in (a, b, c)]
    assert merge_encoded(encoded) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(durations, max_size=500))
def test_encoding_round_trips(values: List[float]) -> None:
    """from_bytes(to_bytes(h)) == h, for any histogram (the empty one included)."""
    histogram = Histogram.of(values)
    assert Histogram.from_bytes(histogram.to_bytes()) == histogram


def test_encoding_is_compact() -> None:
    """A busy window (a million calls over a few doublings) takes well under 2 KB; a
    quiet one a few dozen bytes."""
    rng = random.Random(1)
    values = [rng.lognormvariate(-9, 1.0) for _ in range(50_000)] * 20
    assert len(Histogram.of(values).to_bytes()) < 2000
    assert len(Histogram.of([0.001, 0.01, 0.1]).to_bytes()) < 64


@pytest.mark.parametrize("data", [b"", b"\x02" + bytes(19), Histogram.of([1.0]).to_bytes()[:-1]])
def test_junk_is_not_decoded(data: bytes) -> None:
    """Bytes that are not an encoding raise ValueError."""
    with pytest.raises(ValueError, match="histogram encoding"):
        Histogram.from_bytes(data)


def test_buckets_follow_otlp() -> None:
    """Bucket i holds (base**i, base**(i+1)]: powers of two are upper bounds, as OTLP's
    exponential histogram says; zeros go to zero_count; offset + dense counts."""
    histogram = Histogram.of([1.0, 2.0, 0.5, 0.0, 1.0])
    assert histogram.buckets() == [(-65, 1), (-1, 2), (63, 1)]
    assert histogram.zero_count == 1
    offset, counts = histogram.positive_buckets()
    assert offset == -65 and len(counts) == 63 + 65 + 1
    assert counts[0] == 1 and counts[64] == 2 and counts[-1] == 1 and sum(counts) == 4
    for value in (1e-6, 0.0123, 1.0, 7.5, 3600.0):
        ((index, _),) = Histogram.of([value]).buckets()
        low, high = histogram.bounds(index)
        assert low < value <= high * (1 + 1e-12)


def test_a_coarser_histogram_merges_by_downscaling() -> None:
    """Merging a scale-5 histogram into a scale-6 one gives scale 5, counts kept."""
    fine = Histogram.of([1.0, 1.5, 3.0])
    coarse = Histogram(5)
    coarse.record_many([1.5, 10.0])
    fine.merge(coarse)
    assert fine.scale == 5 and fine.count == 5
    expected = Histogram(5)
    expected.record_many([1.0, 1.5, 3.0, 1.5, 10.0])
    assert fine == expected
    assert merge_encoded([Histogram.of([1.0, 1.5, 3.0]).to_bytes(), coarse.to_bytes()]) == expected


def test_values_handed_over_later_are_counted_when_read() -> None:
    """add_later() does no bucketing; the values count as soon as the histogram is read."""
    histogram = Histogram()
    values = [0.001, 0.002, 0.0]
    histogram.add_later(values)
    assert histogram._counts == {} and histogram.zero_count == 0  # nothing done yet
    assert histogram == Histogram.of(values)
    assert histogram.count == 3


def test_infinite_and_nan_values_do_not_break_recording() -> None:
    """Values no clock gives (inf, nan, negative) count as zeros instead of raising."""
    histogram = Histogram.of([math.inf, math.nan, -1.0, 0.5])
    assert histogram.count == 4 and histogram.zero_count == 3


def test_empty_histogram_has_no_quantile() -> None:
    """An empty histogram's quantile is None."""
    assert Histogram().quantile(0.5) is None
