from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import timezone

from arena.models import Battle, Mode, Turn
from modelhub.models import Generation, GenerationStatus, Model
from modelhub.signals import generation_finishing
from tests.factories import EndpointFactory, ModelFactory


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Rate-limit windows live in Redis across tests: start every test with none counted."""
    from arena.ratelimit import KEY_PREFIX
    from modelhub.redis_clients import client as redis_client

    client = redis_client()
    for key in client.scan_iter(KEY_PREFIX + "*"):
        client.delete(key)
    yield


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


def finish_turn(turn: Turn, text_a: str = "answer a", text_b: str = "answer b") -> None:
    """Finish the turn's answers as the pool does: modelhub's generation_finishing signal (the
    arena flags leaks on it), then the terminal state."""
    now = timezone.now()
    for generation, text in ((turn.generation_a, text_a), (turn.generation_b, text_b)):
        if generation is None:
            continue
        generation.status, generation.text = GenerationStatus.DONE, text
        generation.finished_at, generation.last_seq = now, 2
        generation_finishing.send(Generation, generation=generation)
        Generation.objects.filter(id=generation.id).update(
            status=GenerationStatus.DONE, text=text, finished_at=now, last_seq=2
        )


def last_turn(battle: Battle) -> Turn:
    turn = battle.turns.filter(superseded=False).order_by("-index").first()
    assert turn is not None
    return turn


__all__ = ["Mode", "finish_turn", "last_turn"]
