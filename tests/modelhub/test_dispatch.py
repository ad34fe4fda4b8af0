"""Starting a generation: the claim, and the order in which it tries a model's endpoints (enabled
ones only, healthy before unhealthy, least loaded (fewest generations streaming) first)."""

from __future__ import annotations

import pytest

from modelhub.models import Generation, GenerationStatus
from modelhub.selectors import endpoints_for_dispatch
from tests.factories import EndpointFactory, ModelFactory

pytestmark = pytest.mark.django_db


def _streaming(endpoint, n: int, status: str = GenerationStatus.STREAMING) -> None:  # type: ignore[no-untyped-def]
    for _ in range(n):
        Generation.objects.create(
            model=endpoint.model, endpoint=endpoint, messages=[], params={}, status=status
        )


def test_it_orders_endpoints_healthy_first_then_least_loaded() -> None:
    model = ModelFactory.create()
    busy = EndpointFactory.create(model=model, base_url="http://busy/v1")
    idle = EndpointFactory.create(model=model, base_url="http://idle/v1")
    down = EndpointFactory.create(model=model, base_url="http://down/v1", healthy=False)
    EndpointFactory.create(model=model, base_url="http://off/v1", enabled=False)
    EndpointFactory.create(model=ModelFactory.create(), base_url="http://other/v1")
    _streaming(busy, 3)
    _streaming(idle, 1)
    _streaming(idle, 5, status=GenerationStatus.DONE)  # finished ones are no load

    order = endpoints_for_dispatch(model=model)

    assert [e.base_url for e in order] == [idle.base_url, busy.base_url, down.base_url]
    assert [e.inflight for e in order] == [1, 3, 0]  # type: ignore[attr-defined]


def test_it_claims_a_queued_generation_once_with_its_model() -> None:
    from modelhub.services import _claim

    model = ModelFactory.create(name="claimed-model")
    generation = Generation.objects.create(model=model, messages=[], params={})

    claimed = _claim(str(generation.id))

    assert claimed is not None and claimed.id == generation.id
    assert claimed.model.name == "claimed-model"
    generation.refresh_from_db()
    assert (generation.status, generation.attempts) == (GenerationStatus.STREAMING, 1)
    assert generation.started_at is not None and generation.heartbeat_at == generation.started_at
    Generation.objects.filter(id=generation.id).update(status=GenerationStatus.DONE)
    assert _claim(str(generation.id)) is None  # finished: nothing left to do
