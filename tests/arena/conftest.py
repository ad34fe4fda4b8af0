from __future__ import annotations

import pytest

from modelhub.models import Model
from tests.factories import EndpointFactory, ModelFactory


@pytest.fixture
def arena_models(db: None) -> list:  # type: ignore[type-arg]
    """Three healthy text models and one vision model, each with an endpoint (and no others)."""
    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    models = [
        ModelFactory.create(name="alpha-7b", display_name="Alpha 7B", organization="Alphacorp"),
        ModelFactory.create(name="beta-chat", display_name="Beta Chat", organization="Betalabs"),
        ModelFactory.create(name="gamma-1", display_name="Gamma One", organization="Gammaworks"),
        ModelFactory.create(
            name="delta-vision",
            display_name="Delta Vision",
            organization="Deltaview",
            modalities=["text", "image"],
        ),
    ]
    for model in models:
        # No worker consumes this queue: generations stay queued and each test finishes them
        # itself (finish_turn), whether or not another test started a Celery worker.
        model.queue = "gen.arena-unit-tests"
        model.save(update_fields=["queue"])
        EndpointFactory.create(model=model)
    return models
