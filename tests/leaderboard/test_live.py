"""The live board: a counted vote schedules a quick refit from counts that publishes a live
snapshot within seconds; the full refresh keeps refitting every board on its schedule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from arena import tasks
from arena.leaderboard import boards, selectors, services
from arena.models import Battle, LeaderboardSnapshot, Vote
from modelhub.models import Model
from modelhub.redis_clients import client as redis_client
from tests.arena.helpers import finish_turn, last_turn
from tests.helpers import wait_for
from tests.leaderboard.votes import make_vote, simulate_votes

ROUNDS = {"rounds": 30, "style_rounds": 5, "elo_rounds": 5, "min_votes": 0}


@pytest.fixture
def unserved_models(board_models: list[Model]) -> list[Model]:
    """The board's models on a queue no worker consumes: each test finishes its answers itself."""
    Model.objects.filter(id__in=[m.id for m in board_models]).update(queue="gen.live-board-tests")
    redis_client().delete(services.LIVE_PENDING_KEY)
    return board_models


def _vote_through_the_view(user: User, choice: str = "a") -> Vote:
    client = Client()
    client.force_login(user)
    response = client.post("/battles/", {"prompt": "hello"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content
    battle = Battle.objects.filter(user=user).order_by("-created_at").first()
    assert battle is not None
    turn = last_turn(battle)
    finish_turn(turn)
    response = client.post(f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": choice})
    assert response.status_code in (200, 302), response.content
    return Vote.objects.get(turn=turn)


def test_it_publishes_a_live_snapshot_with_a_vote_cast_through_the_view(
    unserved_models: list[Model], bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    simulate_votes(unserved_models[:3], 30)
    base = services.leaderboard_refresh(**ROUNDS)

    with django_capture_on_commit_callbacks(execute=True):
        vote = _vote_through_the_view(bob)

    assert redis_client().exists(services.LIVE_PENDING_KEY)  # the publish is scheduled
    snapshot_id = tasks.publish_live_leaderboard()
    assert snapshot_id is not None
    live = LeaderboardSnapshot.objects.get(id=snapshot_id)
    assert live.live and live.id != base.id
    assert live.votes_counted == base.votes_counted + 1
    assert vote.id in selectors.unpack_ids(live.vote_ids)
    assert live.data["live"] == {"base": base.id, "added": 1, "last_id": vote.id}
    before = {r["model"]: r["battles"] for r in base.data["boards"]["bt"][""]["models"]}
    after = {r["model"]: r["battles"] for r in live.data["boards"]["bt"][""]["models"]}
    a, b = vote.battle.model_a.name, vote.battle.model_b.name  # type: ignore[union-attr]
    assert after[a] == before.get(a, 0) + 1 and after[b] == before.get(b, 0) + 1
    assert live.data["boards"]["bt"][""]["interval"] == "sandwich"
    assert live.data["boards"]["style"] == base.data["boards"]["style"]
    assert not redis_client().exists(services.LIVE_PENDING_KEY)
    exported = Client()
    exported.force_login(bob)
    body = exported.get(f"/leaderboard/{live.id}/export.json").json()
    assert body["live"] == live.data["live"] and body["vote_hash"] == ""
    # Nothing new since: the next publish changes nothing.
    assert tasks.publish_live_leaderboard() == live.id
    assert LeaderboardSnapshot.objects.count() == 2


def test_it_fits_the_live_board_as_the_full_fit_does_from_the_same_counts(
    board_models: list[Model],
) -> None:
    simulate_votes(board_models[:3], 40)
    base = services.leaderboard_refresh(**ROUNDS)
    added = simulate_votes(board_models[:3], 20, seed=7)
    live = services.leaderboard_publish_live()
    assert live is not None and live.live
    full = services.leaderboard_refresh(**ROUNDS | {"interval": "sandwich"})
    assert not full.live and full.votes_counted == base.votes_counted + len(added)
    for category in full.data["categories"]:
        assert sorted(live.data["cells"][category]) == sorted(full.data["cells"][category])
    for category in ["", *full.data["categories"]]:
        want = {r["model"]: r["rating"] for r in full.data["boards"]["bt"][category]["models"]}
        got = {r["model"]: r["rating"] for r in live.data["boards"]["bt"][category]["models"]}
        assert got == pytest.approx(want, abs=1e-6)


def test_it_names_the_live_command_lines() -> None:
    params = {"seed": 0, "ties": "half", "bothbad": "tie", "prior": 0.5, "min_votes": 300}
    params |= {"rounds": 1000, "style_rounds": 100, "elo_rounds": 100}
    commands = boards.live_commands(params, ["coding"])
    assert "--interval sandwich" in commands["bt:coding"]
    assert "--bootstrap" not in commands["bt:"]
    assert "--bootstrap 100" in commands["style:"]


def test_it_publishes_a_full_snapshot_when_none_exists(board_models: list[Model]) -> None:
    LeaderboardSnapshot.objects.all().delete()
    make_vote(board_models[0], board_models[1], "a")
    snapshot = services.leaderboard_publish_live()
    assert snapshot is not None and not snapshot.live and snapshot.votes_counted == 1


@pytest.mark.django_db(transaction=True)
def test_it_publishes_within_seconds_of_a_vote_on_a_real_worker(
    unserved_models: list[Model], bob: User, celery_worker: str
) -> None:
    simulate_votes(unserved_models[:3], 10)
    base = services.leaderboard_refresh(**ROUNDS)

    vote = _vote_through_the_view(bob, "b")

    def published() -> bool:
        latest = selectors.snapshot_latest_with_ids()
        return latest is not None and vote.id in selectors.unpack_ids(latest.vote_ids)

    wait_for(published, timeout=20)
    latest = selectors.snapshot_latest()
    assert latest is not None and latest.live and latest.data["live"]["base"] == base.id


def test_it_swaps_the_open_board_only_when_a_newer_snapshot_exists(
    board_models: list[Model],
) -> None:
    simulate_votes(board_models[:3], 20)
    first = services.leaderboard_refresh(**ROUNDS)
    client = Client()

    same = client.get("/leaderboard/", {"since": first.id}, HTTP_HX_REQUEST="true")
    assert same.status_code == 204
    page = client.get("/leaderboard/").content.decode()
    assert f'data-snapshot="{first.id}"' in page and 'hx-trigger="every 3s"' in page

    make_vote(board_models[0], board_models[1], "a")
    live = services.leaderboard_publish_live()
    assert live is not None
    newer = client.get("/leaderboard/", {"since": first.id}, HTTP_HX_REQUEST="true")
    assert newer.status_code == 200
    body = newer.content.decode()
    assert f'data-snapshot="{live.id}"' in body and f"{live.votes_counted} counted votes" in body
    assert "<html" not in body  # the board partial only


def test_it_polls_an_empty_board_until_the_first_snapshot(board_models: list[Model]) -> None:
    LeaderboardSnapshot.objects.all().delete()
    client = Client()
    page = client.get("/leaderboard/").content.decode()
    assert 'hx-trigger="every 3s"' in page

    assert client.get("/leaderboard/", HTTP_HX_REQUEST="true").status_code == 204
    make_vote(board_models[0], board_models[1], "a")
    first = services.leaderboard_publish_live()
    assert first is not None
    board = client.get("/leaderboard/", HTTP_HX_REQUEST="true")
    assert board.status_code == 200 and f'data-snapshot="{first.id}"' in board.content.decode()


def test_it_deletes_live_snapshots_older_than_ten_minutes(board_models: list[Model]) -> None:
    simulate_votes(board_models[:3], 10)
    base = services.leaderboard_refresh(**ROUNDS)
    make_vote(board_models[0], board_models[1], "a")
    old = services.leaderboard_publish_live()
    assert old is not None and old.live
    LeaderboardSnapshot.objects.filter(id=old.id).update(
        created_at=old.created_at - services.LIVE_KEEP - timedelta(seconds=1)
    )

    make_vote(board_models[0], board_models[2], "b")
    new = services.leaderboard_publish_live()

    assert new is not None and new.live
    assert set(LeaderboardSnapshot.objects.values_list("id", flat=True)) == {base.id, new.id}


def test_it_keeps_only_the_newest_live_snapshots(
    board_models: list[Model], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "LIVE_KEEP_MAX", 3)
    simulate_votes(board_models[:3], 10)
    base = services.leaderboard_refresh(**ROUNDS)
    published = []
    for i in range(5):
        make_vote(board_models[0], board_models[1 + i % 2], "a")
        snapshot = services.leaderboard_publish_live()
        assert snapshot is not None and snapshot.live
        published.append(snapshot.id)

    live = set(LeaderboardSnapshot.objects.filter(live=True).values_list("id", flat=True))
    assert live == set(published[-3:])
    assert LeaderboardSnapshot.objects.filter(id=base.id).exists()
