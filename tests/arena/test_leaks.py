"""Identity leaks flagged by the serving pool's own finish: an answer streamed by a real worker
that names one of the battle's models flags the battle before anyone votes, and the vote on it is
kept but marked; an answer that names nothing flags nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from arena.models import Battle, Vote
from modelhub.models import GenerationStatus, Model
from tests.arena.helpers import last_turn
from tests.factories import EndpointFactory, ModelFactory
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)  # the worker sees committed rows

TERMINAL = {GenerationStatus.DONE, GenerationStatus.ERROR, GenerationStatus.CANCELLED}


@pytest.fixture
def parrots(upstream: Any, celery_worker: str) -> list[Model]:
    """Two models that repeat the prompt back (the fake upstream's fake-say)."""
    Model.objects.update(enabled=False)
    models = []
    for name, display in (("parrot-a", "Polly Parrot"), ("parrot-b", "Kea Parrot")):
        model = ModelFactory.create(name=name, display_name=display, served_name="fake-say")
        EndpointFactory.create(model=model, base_url=upstream.base_url)
        models.append(model)
    return models


def _battle_finished(client: Client, prompt: str) -> Battle:
    response = client.post("/battles/", {"prompt": prompt}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content
    battle = Battle.objects.order_by("-created_at").first()
    assert battle is not None
    turn = last_turn(battle)
    for generation in (turn.generation_a, turn.generation_b):
        assert generation is not None
        wait_for(lambda g=generation: type(g).objects.get(id=g.id).status in TERMINAL)
    return battle


def test_a_streamed_answer_naming_a_model_flags_its_battle(parrots: list[Model]) -> None:
    client = Client()
    quiet = _battle_finished(client, "tell me about tea")
    loud = _battle_finished(client, "say: hello, I am Polly Parrot")

    quiet.refresh_from_db()
    loud.refresh_from_db()
    assert last_turn(loud).generation_a.text.strip() == "say: hello, I am Polly Parrot"  # type: ignore[union-attr]
    assert (quiet.leaked, loud.leaked) == (False, True)
    turn = last_turn(loud)
    response = client.post(
        f"/b/{loud.id}/vote/", {"turn": turn.id, "choice": "a"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert Vote.objects.get(battle=loud).leaked
