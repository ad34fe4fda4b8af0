"""The bench's own arithmetic: what it reports must mean what it says."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))  # as the bench scripts import it
from _harness import peak_overlap, percentile


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0),
        ([(0.0, 1.0)], 1),
        ([(0.0, 5.0), (1.0, 6.0), (2.0, 7.0)], 3),  # all three open from 2 to 5
        ([(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)], 1),  # each starts as the one before ends
        ([(0.0, 10.0), (1.0, 2.0), (3.0, 4.0), (3.5, 5.0)], 3),
    ],
)
def test_peak_overlap_counts_the_most_intervals_open_at_once(
    intervals: list[tuple[float, float]], expected: int
) -> None:
    assert peak_overlap(intervals) == expected


def test_percentile_picks_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 51.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) != percentile([], 50)  # nan: nothing measured
