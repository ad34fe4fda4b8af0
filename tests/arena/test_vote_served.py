"""Votes through the ASGI app the product serves (config.asgi.application): Django's whole
middleware chain (CSRF included, which the test client skips) answers them, with its headers."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from arena import services
from arena.models import Battle, Turn, Vote
from config.asgi import application
from tests.arena.helpers import finish_turn, last_turn
from tests.helpers import run_async

pytestmark = pytest.mark.django_db(transaction=True)  # the server's threads see committed rows

CSRF = secrets.token_hex(16)  # a 32-character secret, as Django's cookie holds


def _battle(client: Client, finished: bool = True) -> tuple[Battle, Turn]:
    response = client.post("/battles/", {"prompt": "hello there"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content
    battle = Battle.objects.order_by("-created_at").first()
    assert battle is not None
    turn = last_turn(battle)
    if finished:
        finish_turn(turn)
    return battle, turn


def _session(client: Client) -> str:
    return client.cookies["sessionid"].value


def _post(
    battle: Battle,
    data: dict[str, Any],
    *,
    session: str,
    csrf_cookie: str = CSRF,
    csrf_header: str = CSRF,
    htmx: bool = True,
) -> httpx.Response:
    headers = {"X-CSRFToken": csrf_header} if csrf_header else {}
    if htmx:
        headers["HX-Request"] = "true"
    cookies = {"sessionid": session} | ({"csrftoken": csrf_cookie} if csrf_cookie else {})

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=cookies
        ) as client:
            return await client.post(f"/b/{battle.id}/vote/", data=data, headers=headers)

    return run_async(go())


def test_it_answers_an_htmx_vote_with_the_reveal_and_the_middlewares_headers(
    arena_models: list[Any],
) -> None:
    client = Client()
    battle, turn = _battle(client)

    response = _post(battle, {"turn": turn.id, "choice": "b"}, session=_session(client))

    assert response.status_code == 200
    assert battle.model_a.display_name in response.text
    assert battle.model_b is not None and battle.model_b.organization in response.text
    assert f"/s/{battle.id}/" in response.text  # the share link
    headers = response.headers
    assert headers["hx-retarget"] == "#actions"
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert "Cookie" in headers["vary"]
    vote = Vote.objects.get(battle=battle)
    assert (vote.choice, vote.anony, vote.leaked, vote.user_id) == ("b", True, False, None)
    assert vote.session_key == _session(client)
    assert vote.ip_hash == services.ip_hash("127.0.0.1")
    assert vote.time_to_vote_ms is not None


@pytest.mark.parametrize(
    "forgery",
    [
        {"csrf_header": secrets.token_hex(16)},
        {"csrf_cookie": ""},
        {"csrf_header": ""},
    ],
    ids=["wrong token", "no cookie", "no token"],
)
def test_it_rejects_a_vote_that_fails_the_csrf_check_and_counts_nothing(
    arena_models: list[Any], forgery: dict[str, Any]
) -> None:
    client = Client()
    battle, turn = _battle(client)

    forged = _post(battle, {"turn": turn.id, "choice": "a"}, session=_session(client), **forgery)

    assert forged.status_code == 403
    assert not Vote.objects.exists()
    assert (
        _post(battle, {"turn": turn.id, "choice": "a"}, session=_session(client)).status_code == 200
    )


def test_it_refuses_each_abuse_with_its_status_and_stores_nothing_extra(
    arena_models: list[Any], settings: Any
) -> None:
    alice = Client()
    battle, turn = _battle(alice, finished=False)
    session = _session(alice)
    early = _post(battle, {"turn": turn.id, "choice": "a"}, session=session)
    assert (early.status_code, early.text) == (
        425,
        "Wait until both answers are complete before voting.",
    )
    finish_turn(turn)
    assert _post(battle, {"turn": turn.id, "choice": "up"}, session=session).status_code == 400
    assert _post(battle, {"turn": "x", "choice": "a"}, session=session).status_code == 400
    mallory = Client()
    _battle(mallory)  # mallory has a session of her own
    theirs = _post(battle, {"turn": turn.id, "choice": "a"}, session=_session(mallory))
    assert theirs.status_code == 404
    assert _post(battle, {"turn": turn.id, "choice": "a"}, session=session).status_code == 200
    replay = _post(battle, {"turn": turn.id, "choice": "b"}, session=session)
    assert (replay.status_code, replay.text) == (409, "This answer already has your vote.")
    assert list(Vote.objects.values_list("battle_id", "choice")) == [(battle.id, "a")]

    settings.ARENA_VOTES_PER_MINUTE = 1
    other, other_turn = _battle(alice)
    too_fast = _post(other, {"turn": other_turn.id, "choice": "a"}, session=session)
    assert too_fast.status_code == 429
    assert not Vote.objects.filter(battle=other).exists()


def test_a_plain_form_post_is_redirected_and_a_signed_in_vote_is_the_users(
    arena_models: list[Any],
) -> None:
    client = Client()
    battle, turn = _battle(client)
    plain = _post(battle, {"turn": turn.id, "choice": "a"}, session=_session(client), htmx=False)
    assert (plain.status_code, plain.headers["location"]) == (302, f"/b/{battle.id}/")
    assert Vote.objects.get(battle=battle).choice == "a"

    user = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    signed_in = Client()
    signed_in.force_login(user)
    own, own_turn = _battle(signed_in)
    response = _post(own, {"turn": own_turn.id, "choice": "b"}, session=_session(signed_in))
    assert response.status_code == 200
    assert Vote.objects.get(battle=own).user_id == user.id
