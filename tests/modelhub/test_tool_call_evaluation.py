"""The function-calling evaluation from the command line: each model's endpoint answers the test
set, the score is stored, and the tools board shows it as a column."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from arena.leaderboard import services as leaderboard
from modelhub.models import Model, ToolCallEvaluation
from modelhub.zoo import tooluse
from tests.factories import EndpointFactory, ModelFactory
from tests.leaderboard.votes import make_vote

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    path = tmp_path / "tool_calls.jsonl"
    tooluse.write_cases(path, tooluse.test_cases(seed=5, n_each=6, train_texts=[]))
    return path


@pytest.fixture
def tool_models(upstream: Any) -> list[Model]:
    """One model that calls the calculator on arithmetic (and nothing else), one that searches
    for whatever it is asked, one with no endpoint."""
    Model.objects.update(enabled=False)
    models = []
    for name, served in (("abacus", "fake-tools"), ("seeker", "fake-tools-search")):
        model = ModelFactory.create(name=name, served_name=served, tools=["calculator", "search"])
        EndpointFactory.create(model=model, base_url=upstream.base_url)
        models.append(model)
    models.append(ModelFactory.create(name="unreachable", tools=["calculator"]))
    return models


def test_it_scores_each_models_calls_on_name_and_arguments(
    tool_models: list[Model], cases: Path
) -> None:
    out = StringIO()
    call_command("evaluate_tool_calls", "abacus", "seeker", cases=cases, stdout=out)
    abacus = ToolCallEvaluation.objects.get(model__name="abacus")
    # The calculator with the question's expression: every arithmetic case; lookups get no call.
    assert abacus.cases == 12 and abacus.accuracy == 0.5
    assert abacus.by_category == {"arithmetic": 1.0, "lookup": 0.0}
    assert abacus.called_by_category == {"arithmetic": 1.0, "lookup": 0.0}
    assert len(abacus.test_set_sha256) == 64
    # Search with the whole question as its query: a call every time, never the right arguments.
    seeker = ToolCallEvaluation.objects.get(model__name="seeker")
    assert seeker.accuracy == 0.0 and seeker.called_by_category["lookup"] == 1.0
    assert "abacus: 50.0% of 12 (arithmetic 100.0%, lookup 0.0%)" in out.getvalue()


def test_it_stores_nothing_for_a_model_it_cannot_evaluate(
    tool_models: list[Model], cases: Path, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="no such model: nobody"):
        call_command("evaluate_tool_calls", "abacus", "nobody", cases=cases)
    err = StringIO()
    with pytest.raises(CommandError, match="not evaluated: unreachable"):
        call_command("evaluate_tool_calls", cases=cases, stderr=err)  # every enabled tool model
    assert "unreachable has no enabled endpoint" in err.getvalue()
    assert set(ToolCallEvaluation.objects.values_list("model__name", flat=True)) == {
        "abacus",
        "seeker",
    }
    with pytest.raises(CommandError, match="not evaluated: abacus"):
        call_command("evaluate_tool_calls", "abacus", cases=tmp_path / "missing.jsonl")
    assert ToolCallEvaluation.objects.count() == 2


def test_it_shows_the_latest_score_as_a_column_of_the_tools_board(
    tool_models: list[Model], cases: Path
) -> None:
    abacus, seeker, _ = tool_models
    ToolCallEvaluation.objects.create(model=abacus, accuracy=0.1, cases=12, test_set_sha256="0")
    call_command("evaluate_tool_calls", "abacus", cases=cases)  # the latest run counts: 50 %
    for choice in ("a", "b", "a"):
        make_vote(abacus, seeker, choice, categories=["tools"])
    make_vote(abacus, seeker, "a")
    leaderboard.leaderboard_refresh(rounds=20, style_rounds=5, elo_rounds=5, min_votes=1)

    page = Client().get("/leaderboard/", {"category": "tools"}).content.decode()
    assert ">Function calling</th>" in page
    assert '<td class="lb-num" data-testid="function-calling">50.0%</td>' in page
    assert '<td class="lb-num" data-testid="function-calling">—</td>' in page  # never evaluated
    partial = Client().get("/leaderboard/", {"category": "tools"}, HTTP_HX_REQUEST="true")
    assert "50.0%" in partial.content.decode()
    assert "Function calling" not in Client().get("/leaderboard/").content.decode()
