"""Provenance: a promoted model's leaderboard row links back to its job (whose page names the
dataset version)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from arena.leaderboard import services as leaderboard
from collection.models import DatasetVersion
from collection.training import services
from collection.training.tasks import finetune_run
from modelhub.models import Model
from tests.leaderboard.votes import make_vote
from tests.training.conftest import BASE, JUDGE
from tests.training.test_jobs import _launch

pytestmark = pytest.mark.django_db


def test_it_links_a_promoted_models_leaderboard_row_to_its_job_and_dataset_version(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    job = _launch(version, hub[BASE], django_capture_on_commit_callbacks, lora=True)
    finetune_run(job.id)
    services.job_promote(job_id=job.id)
    job.refresh_from_db()
    model = job.promoted_model
    assert model is not None
    url = reverse("training-job", args=[job.id])
    assert model.source_url == url and str(version) in model.source_label

    for choice in ("a", "b", "a", "a"):
        make_vote(model, hub[JUDGE], choice)
    make_vote(hub[BASE], hub[JUDGE], "b")
    leaderboard.leaderboard_refresh(rounds=10, style_rounds=5, elo_rounds=5, min_votes=1)

    page = Client().get("/leaderboard/").content.decode()
    link = f'<a class="lb-source" data-testid="model-source" href="{url}">'
    assert page.count(link) == 1
    assert f"fine-tuned: job #{job.id} on {version}" in page
