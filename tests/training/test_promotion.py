"""Promotion: a trained job's model is registered in the hub, the local engine serves it, and
anonymous battles draw it (as a new model, boosted until it has votes)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.conf import settings

from arena import sampling
from arena.models import SamplingPolicy
from arena.selectors import Requester, sampling_candidates
from arena.services.battles import battle_create
from collection.models import DatasetVersion, JobState
from collection.training import services
from collection.training.tasks import finetune_run
from modelhub.models import Model
from modelhub.selectors import models_available
from modelhub.zoo.serving import engine_server
from tests.training.conftest import BASE, JUDGE
from tests.training.test_jobs import _launch

pytestmark = pytest.mark.django_db


def test_it_promotes_a_model_the_engine_serves_and_battles_draw(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    job = _launch(version, hub[BASE], django_capture_on_commit_callbacks, lora=True)
    with pytest.raises(services.JobError, match="trained and evaluated"):
        services.job_promote(job_id=job.id)
    finetune_run(job.id)

    services.job_promote(job_id=job.id)

    job.refresh_from_db()
    model = job.promoted_model
    assert job.state == JobState.PROMOTED and model is not None
    assert model.engine == "local" and model.heldout_loss == job.metrics["heldout_loss_after"]
    assert [e.base_url for e in model.endpoints.all()] == [settings.LOCAL_ENGINE_URL]
    assert model in models_available()

    # A new model: boosted in pair sampling until it has votes (the others have some).
    SamplingPolicy.objects.create(new_model_boost=3.0, new_model_until_votes=5)
    policy, candidates = sampling_candidates(list(models_available()), key=lambda m: m.name)
    weights = {
        c.key: sampling.effective_weight(
            c,
            new_model_boost=policy.new_model_boost,
            new_model_until_votes=policy.new_model_until_votes,
        )
        for c in candidates
    }
    assert weights == {BASE: 1.0, JUDGE: 1.0, model.name: 3.0}

    Model.objects.filter(name=JUDGE).update(arena_eligible=False)  # a pool of two: it must battle
    with django_capture_on_commit_callbacks(execute=False):
        battle = battle_create(requester=Requester(user_id=None, session_key="s"), prompt="hi")
    assert model.id in (battle.model_a_id, battle.model_b_id)

    with engine_server(settings.MODELS_DIR) as engine:
        answer = httpx.post(
            f"{engine}/v1/chat/completions",
            json={
                "model": model.name,
                "messages": [{"role": "user", "content": "what is two plus two?"}],
                "max_tokens": 8,
                "temperature": 0,
            },
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
