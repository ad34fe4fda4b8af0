"""The leak check reads every answer that ends, the text a reaped answer streamed included, and a
check that fails flags the battle (fails closed) rather than letting its votes count unchecked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from arena import leak
from arena.models import Battle, Mode, Turn
from modelhub import services, streams
from modelhub.models import Generation, GenerationStatus
from modelhub.pool import redis_client
from tests.factories import ModelFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def _battle_streaming() -> tuple[Battle, Generation]:
    """An anonymous battle whose first answer is streaming (claimed by a worker)."""
    model_a = ModelFactory.create(name="polly-7b", display_name="Polly Parrot")
    model_b = ModelFactory.create(name="kea-7b", display_name="Kea")
    gens = [Generation.objects.create(model=m, messages=[], params={}) for m in (model_a, model_b)]
    battle = Battle.objects.create(
        mode=Mode.ANONYMOUS, model_a=model_a, model_b=model_b, session_key="s-leak"
    )
    Turn.objects.create(
        battle=battle, index=1, prompt="who are you", generation_a=gens[0], generation_b=gens[1]
    )
    [(claimed, _)] = services.generations_claim(generation_ids=[str(gens[0].id)])
    return battle, claimed


def test_it_flags_the_battle_when_a_reaped_answer_named_its_model() -> None:
    battle, generation = _battle_streaming()
    streams.add_many(redis_client(), [(str(generation.id), 1, "Hello, I am Polly Parrot")])
    Generation.objects.filter(id=generation.id).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )

    assert services.generation_reap_stale(older_than_s=30) == 1

    battle.refresh_from_db()
    assert battle.leaked


def test_a_leak_check_that_fails_flags_the_battle(monkeypatch: pytest.MonkeyPatch) -> None:
    battle, generation = _battle_streaming()

    def broken(text: str, identities: object) -> bool:
        raise RuntimeError("the check broke")

    monkeypatch.setattr(leak, "is_leak", broken)  # a fault in the check, not a verdict
    services.generation_finish(
        generation=generation,
        status=GenerationStatus.DONE,
        seq=1,
        text="an answer naming nobody",
        finish_reason="stop",
    )

    battle.refresh_from_db()
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.DONE and battle.leaked
