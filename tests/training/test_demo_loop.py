"""manage.py demo_loop: simulated votes, a frozen version, a job, its gate, promotion, new votes
and the leaderboard before and after, ending on one JSON line."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from arena.models import Battle, Vote
from collection.models import FinetuneJob, JobState
from modelhub.models import Model
from tests.training.conftest import BASE, JUDGE

pytestmark = pytest.mark.django_db


def test_it_runs_the_loop_and_ends_on_one_json_line(hub: dict[str, Model]) -> None:
    out = StringIO()
    call_command(
        "demo_loop",
        base=BASE,
        reference=JUDGE,
        judge=JUDGE,
        battles=8,
        battles_after=6,
        steps=2,
        rounds=5,
        max_new_tokens=6,
        stdout=out,
    )

    lines = out.getvalue().strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {
        "base_model", "new_model", "rating_before", "rating_after", "heldout_loss_before",
        "heldout_loss_after", "judge_win_rate",
    }  # fmt: skip
    job = FinetuneJob.objects.get()
    assert job.state == JobState.PROMOTED and job.promoted_model is not None
    assert result["base_model"] == BASE and result["new_model"] == job.promoted_model.name
    assert result["heldout_loss_after"] == job.metrics["heldout_loss_after"]
    assert Model.objects.filter(name=result["new_model"], enabled=True).exists()
    # Every battle went through the arena and got its vote; the new model battled afterwards.
    assert Battle.objects.count() == 14 and Vote.objects.count() == 14
    assert Battle.objects.filter(model_a__name=result["new_model"]).exists() or (
        Battle.objects.filter(model_b__name=result["new_model"]).exists()
    )
    assert "Leaderboard before:" in out.getvalue() and "Leaderboard after:" in out.getvalue()


def test_it_refuses_models_the_hub_lacks(hub: dict[str, Model]) -> None:
    with pytest.raises(CommandError, match="no such model: nobody"):
        call_command("demo_loop", base="nobody", reference=JUDGE, judge=JUDGE)
    assert not Battle.objects.exists() and not FinetuneJob.objects.exists()
