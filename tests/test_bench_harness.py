"""The bench's own arithmetic: what it reports must mean what it says."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import ROOT

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


@pytest.mark.django_db
@pytest.mark.parametrize("keep", [False, True])
def test_the_serving_bench_retires_its_model_however_the_run_ends(keep: bool) -> None:
    """Its upstream dies with the run: left enabled, its endpoint would read as down on /healthz
    of the instance the bench ran against, for good."""
    from serving import _retired

    from modelhub.health import health_report
    from modelhub.models import Endpoint, Generation, Model

    model = Model.objects.create(name="bench-serving", served_name="fake-r20", enabled=True)
    Endpoint.objects.create(model=model, base_url="http://127.0.0.1:9/v1", healthy=False)
    Generation.objects.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert "endpoint:bench-serving" in health_report()[1]["degraded"]

    with pytest.raises(RuntimeError), _retired(model, keep=keep):
        raise RuntimeError("the run broke")

    assert "endpoint:bench-serving" not in health_report()[1]["degraded"]
    if keep:
        assert Model.objects.get(id=model.id).enabled is False
        assert Generation.objects.filter(model_id=model.id).count() == 1
    else:
        assert not Model.objects.filter(id=model.id).exists()
        assert not Endpoint.objects.filter(model_id=model.id).exists()
        assert not Generation.objects.filter(model_id=model.id).exists()
