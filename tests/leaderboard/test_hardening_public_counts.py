"""What the public leaderboard and its exports publish: counts of counted votes only (a battle
nobody voted on shows nowhere), never a vote on an answer that errored or was stopped, and battle
IDs that open nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from arena.leaderboard import selectors, services
from arena.leaderboard.export import snapshot_battle_lines
from arena.models import Battle, Mode, Turn
from modelhub.models import Generation, GenerationStatus, Model
from tests.leaderboard.votes import make_vote

pytestmark = pytest.mark.django_db


def _public_counts(snapshot: object) -> dict[str, object]:
    """Every count the page and the JSON export show per model and in total."""
    data = snapshot.data  # type: ignore[attr-defined]
    fairness = data["fairness"]
    counts: dict[str, object] = {
        "totals": (fairness["battles"], fairness["votes"]),
        "models": {m["model"]: (m["battles"], m["votes"]) for m in fairness["models"]},
    }
    for method, boards in data["boards"].items():
        for category, board in boards.items():
            counts[f"{method}:{category}"] = {
                r["model"]: r.get("battles") for r in board.get("models", [])
            }
    return counts


def _unvoted_battle(model_a: Model, model_b: Model) -> Battle:
    battle = Battle.objects.create(
        mode=Mode.ANONYMOUS, model_a=model_a, model_b=model_b, session_key="s-open"
    )
    gens = [
        Generation.objects.create(
            model=m, messages=[], status=GenerationStatus.DONE, text="an answer"
        )
        for m in (model_a, model_b)
    ]
    Turn.objects.create(
        battle=battle, index=1, prompt="hi", generation_a=gens[0], generation_b=gens[1]
    )
    return battle


def test_an_unvoted_battle_changes_no_public_count(board_models: list[Model]) -> None:
    alpha, beta, gamma, _old = board_models
    for _ in range(3):
        make_vote(alpha, beta, "a")
        make_vote(beta, gamma, "b")
    before = services.leaderboard_refresh(rounds=20, style_rounds=5, elo_rounds=5)

    _unvoted_battle(alpha, gamma)  # still open: its pair must not show
    make_vote(alpha, beta, "tie")  # and a vote elsewhere, so a new snapshot is published
    after = services.leaderboard_refresh(rounds=20, style_rounds=5, elo_rounds=5)

    assert after.id != before.id
    old, new = _public_counts(before), _public_counts(after)
    assert old["models"]["gamma-1"] == new["models"]["gamma-1"]  # type: ignore[index]
    alpha_old, alpha_new = old["models"]["alpha-7b"], new["models"]["alpha-7b"]  # type: ignore[index]
    assert (alpha_new[0] - alpha_old[0], alpha_new[1] - alpha_old[1]) == (1, 1)  # the vote only
    assert new["totals"] == (7, 7)


def test_a_vote_on_an_answer_that_failed_or_was_stopped_is_not_counted(
    board_models: list[Model],
) -> None:
    alpha, beta, gamma, _old = board_models
    counted = make_vote(alpha, beta, "a")
    errored = make_vote(alpha, gamma, "a")
    stopped = make_vote(beta, gamma, "b")
    for generation, status in (
        (errored.turn.generation_b, GenerationStatus.ERROR),
        (stopped.turn.generation_a, GenerationStatus.CANCELLED),
    ):
        assert generation is not None
        generation.status = status
        generation.save(update_fields=["status"])

    assert list(selectors.counted_votes().values_list("id", flat=True)) == [counted.id]
    assert selectors.vote_exclusions()["unfinished"] == 2
    snapshot = services.leaderboard_refresh(rounds=20, style_rounds=5, elo_rounds=5)
    assert snapshot.votes_counted == 1 and snapshot.votes_excluded["unfinished"] == 2


def test_the_exported_battle_id_is_stable_and_opens_nothing(board_models: list[Model]) -> None:
    alpha, beta, *_ = board_models
    vote = make_vote(alpha, beta, "a")
    first = services.leaderboard_refresh(rounds=20, style_rounds=5, elo_rounds=5)
    make_vote(beta, alpha, "b")
    second = services.leaderboard_refresh(rounds=20, style_rounds=5, elo_rounds=5)

    [row] = [json.loads(line) for line in snapshot_battle_lines(snapshot=first)]
    rows = [json.loads(line) for line in snapshot_battle_lines(snapshot=second)]
    exported = row["battle_id"]
    assert rows[0]["battle_id"] == exported  # the same battle, the same ID in every export
    assert rows[1]["battle_id"] != exported
    assert str(vote.battle_id) not in exported and str(vote.battle_id.hex) not in exported
    with pytest.raises(ValueError):
        uuid.UUID(exported)
    client = Client()
    assert client.get(f"/s/{vote.battle_id}/").status_code == 200  # the UUID opens the battle
    for path in (f"/s/{exported}/", f"/b/{exported}/", f"/b/{exported}/image/"):
        assert client.get(path).status_code == 404
