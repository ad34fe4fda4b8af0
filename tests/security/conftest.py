from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from arena import apitokens
from arena.leaderboard import services as leaderboard_services
from modelhub.models import Model
from tests.factories import EndpointFactory, ModelFactory
from tests.leaderboard.votes import simulate_votes


@pytest.fixture
def arena_models(db: None) -> list[Model]:
    """Two text models and two vision models, each with an endpoint on a queue no worker
    consumes: generations stay queued until a test finishes them (finish_turn)."""
    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    models = [
        ModelFactory.create(name="alpha-7b", display_name="Alpha 7B", organization="Alphacorp"),
        ModelFactory.create(name="beta-chat", display_name="Beta Chat", organization="Betalabs"),
        ModelFactory.create(
            name="delta-vision", display_name="Delta Vision", modalities=["text", "image"]
        ),
        ModelFactory.create(
            name="omega-vision", display_name="Omega Vision", modalities=["text", "image"]
        ),
    ]
    for model in models:
        model.queue = "gen.security-unit-tests"
        model.save(update_fields=["queue"])
        EndpointFactory.create(model=model)
    return models


@pytest.fixture
def world(alice: User, bob: User, settings: Any) -> dict[str, Any]:
    """Bob's battle, answers, token and a leaderboard snapshot; a metrics token configured.
    Alice runs the arena: every admin page is hers (a superuser)."""
    User.objects.filter(id=alice.id).update(is_superuser=True)

    settings.METRICS_TOKEN = "metrics-secret"
    Model.objects.update(enabled=False)
    models = [ModelFactory.create(queue="gen.security-unit-tests") for _ in range(2)]
    for model in models:
        EndpointFactory.create(model=model)
    simulate_votes(models, 4)
    snapshot = leaderboard_services.leaderboard_refresh(
        rounds=10, style_rounds=5, elo_rounds=3, seed=1
    )
    token, raw = apitokens.token_create(user=bob, name="script")
    return {"snapshot": snapshot, "token": token, "raw": raw, "bob": bob, "alice": alice}
