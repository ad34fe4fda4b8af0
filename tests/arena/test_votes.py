"""Votes: the happy path and every abuse the vote endpoint refuses, each with a precise 4xx and
nothing stored."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import close_old_connections
from django.test import Client

from arena.models import Battle, Turn, Vote
from tests.arena.helpers import finish_turn, last_turn

pytestmark = pytest.mark.django_db


def _battle(client: Client) -> Battle:
    response = client.post("/battles/", {"prompt": "hello there"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content
    return Battle.objects.order_by("-created_at").first()  # type: ignore[return-value]


def _vote(client: Client, battle: Battle, turn: Turn | int, choice: str = "a") -> Any:
    turn_id = turn if isinstance(turn, int) else turn.id
    return client.post(
        f"/b/{battle.id}/vote/", {"turn": turn_id, "choice": choice}, HTTP_HX_REQUEST="true"
    )


def test_it_records_a_vote_and_reveals_the_names(arena_models: list[Any]) -> None:
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    finish_turn(turn)
    response = _vote(client, battle, turn, "bothbad")
    assert response.status_code == 200
    body = response.content.decode()
    assert battle.model_a.display_name in body
    assert battle.model_b.display_name in body  # type: ignore[union-attr]
    vote = Vote.objects.get()
    assert (vote.choice, vote.anony, vote.leaked, vote.battle_id) == (
        "bothbad", True, False, battle.id,
    )  # fmt: skip
    assert vote.ip_hash and "127.0.0.1" not in vote.ip_hash
    assert vote.time_to_vote_ms is not None


def test_it_refuses_a_double_clicked_vote_with_409(arena_models: list[Any]) -> None:
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    finish_turn(turn)
    assert _vote(client, battle, turn, "a").status_code == 200
    second = _vote(client, battle, turn, "b")
    assert second.status_code == 409
    assert Vote.objects.get().choice == "a"


def test_it_refuses_a_replayed_vote_request_with_409(arena_models: list[Any]) -> None:
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    finish_turn(turn)
    replay = Client()
    replay.cookies = client.cookies  # the same request, sent again later
    assert _vote(client, battle, turn).status_code == 200
    assert _vote(replay, battle, turn).status_code == 409
    assert Vote.objects.count() == 1


def test_it_refuses_a_vote_before_both_answers_are_complete_with_425(
    arena_models: list[Any],
) -> None:
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    response = _vote(client, battle, turn)
    assert response.status_code == 425
    assert not Vote.objects.exists()


def test_it_refuses_a_vote_on_someone_elses_battle_with_404(arena_models: list[Any]) -> None:
    alice = Client()
    battle = _battle(alice)
    turn = last_turn(battle)
    finish_turn(turn)
    mallory = Client()
    mallory.get("/")
    assert _vote(mallory, battle, turn).status_code == 404
    assert (
        Client().post(f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": "a"}).status_code == 404
    )
    assert mallory.get(f"/b/{battle.id}/").status_code == 404
    assert not Vote.objects.exists()


def test_it_refuses_a_turn_of_another_battle_with_404(arena_models: list[Any]) -> None:
    client = Client()
    first = _battle(client)
    second = _battle(client)
    turn = last_turn(second)
    finish_turn(turn)
    assert _vote(client, first, turn).status_code == 404
    assert not Vote.objects.exists()


def test_it_refuses_bad_choices_with_400(arena_models: list[Any]) -> None:
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    finish_turn(turn)
    assert _vote(client, battle, turn, "up").status_code == 400
    assert _vote(client, battle, turn, "model_a; drop").status_code == 400
    assert client.post(f"/b/{battle.id}/vote/", {"choice": "a"}).status_code == 400
    assert not Vote.objects.exists()


def test_it_refuses_a_vote_on_a_regenerated_answer_with_409(arena_models: list[Any]) -> None:
    client = Client()
    battle = _battle(client)
    old = last_turn(battle)
    finish_turn(old)
    assert client.post(f"/b/{battle.id}/regenerate/", HTTP_HX_REQUEST="true").status_code == 200
    assert _vote(client, battle, old).status_code == 409
    new = last_turn(battle)
    finish_turn(new)
    assert _vote(client, battle, new).status_code == 200
    assert client.post(f"/b/{battle.id}/regenerate/", HTTP_HX_REQUEST="true").status_code == 409
    assert Vote.objects.get().turn_id == new.id


def test_it_rate_limits_votes_per_session(arena_models: list[Any], settings: Any) -> None:
    settings.ARENA_VOTES_PER_MINUTE = 2
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    assert _vote(client, battle, turn).status_code == 425
    finish_turn(turn)
    assert _vote(client, battle, turn).status_code == 200
    assert _vote(client, battle, turn).status_code == 429
    assert Vote.objects.count() == 1


def test_it_rate_limits_battles_per_ip(arena_models: list[Any], settings: Any) -> None:
    settings.ARENA_BATTLES_PER_MINUTE_PER_IP = 2
    _battle(Client())
    _battle(Client())
    response = Client().post("/battles/", {"prompt": "one more"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 429
    assert b"too fast" in response.content
    assert Battle.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_stores_one_vote_from_concurrent_submissions(arena_models: list[Any]) -> None:
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    finish_turn(turn)
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def submit() -> None:
        own = Client()
        own.cookies = client.cookies
        barrier.wait()
        statuses.append(_vote(own, battle, turn).status_code)
        close_old_connections()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409, 409, 409, 409, 409]
    assert Vote.objects.count() == 1


def test_it_flags_a_vote_when_an_answer_names_its_model(arena_models: list[Any]) -> None:
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    finish_turn(turn, text_a=f"As {battle.model_b.display_name}, I think so.")  # type: ignore[union-attr]
    battle.refresh_from_db()
    assert battle.leaked  # as soon as the answer finished, before any vote

    response = _vote(client, battle, turn)

    assert response.status_code == 200
    assert "will not count in ratings" in response.content.decode()
    assert Vote.objects.get().leaked


@pytest.mark.django_db(transaction=True)
def test_the_request_path_outside_a_transaction_refuses_flags_and_stores_once(
    arena_models: list[Any],
) -> None:
    """Outside an atomic block the vote statement is its own transaction: a refusal leaves
    nothing behind and the connection usable; an answer that named its model (flagged when it
    finished) flags the vote."""
    client = Client()
    battle = _battle(client)
    turn = last_turn(battle)
    assert _vote(client, battle, turn).status_code == 425
    assert _vote(client, battle, turn, "up").status_code == 400
    finish_turn(turn, text_b=f"I am {battle.model_a.display_name}.")
    assert _vote(client, battle, turn, "tie").status_code == 200
    assert _vote(client, battle, turn, "b").status_code == 409
    vote = Vote.objects.get()
    battle.refresh_from_db()
    assert (vote.choice, vote.anony, vote.leaked, battle.leaked) == ("tie", True, True, True)
    assert vote.time_to_vote_ms is not None and vote.time_to_vote_ms >= 0
