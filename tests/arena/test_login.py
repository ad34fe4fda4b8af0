"""Logging in (not only signing up) moves a visitor's anonymous battles to the account, although
Django's login gives the session a new key."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from arena.models import Battle
from tests.arena.helpers import finish_turn, last_turn

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-pass-123"


def test_a_login_adopts_the_battles_of_the_anonymous_session(arena_models: list[Any]) -> None:
    bob = get_user_model().objects.create_user("bob", password=PASSWORD)
    client = Client()
    client.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    client.post("/battles/", {"prompt": "hello again"}, HTTP_HX_REQUEST="true")
    anonymous_key = client.session.session_key
    response = client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session.session_key != anonymous_key  # login rotated the session
    battles = list(Battle.objects.all())
    assert len(battles) == 2 and all(b.user_id == bob.pk for b in battles)
    battle = battles[0]
    assert client.get(f"/b/{battle.id}/").status_code == 200  # still reachable after rotation
    turn = last_turn(battle)
    finish_turn(turn)
    vote = client.post(f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": "a"})
    assert vote.status_code == 302


def test_a_login_adopts_nothing_of_another_browser(arena_models: list[Any]) -> None:
    get_user_model().objects.create_user("carol", password=PASSWORD)
    stranger = Client()
    stranger.post("/battles/", {"prompt": "mine"}, HTTP_HX_REQUEST="true")
    client = Client()
    client.get("/")
    assert (
        client.post("/accounts/login/", {"username": "carol", "password": PASSWORD}).status_code
        == 302
    )
    assert Battle.objects.get().user_id is None


def test_an_account_keeps_its_battles_after_logout_and_a_login_elsewhere(
    arena_models: list[Any],
) -> None:
    dave = get_user_model().objects.create_user("dave", password=PASSWORD)
    get_user_model().objects.create_user("erin", password=PASSWORD)
    client = Client()
    client.post("/battles/", {"prompt": "hi"}, HTTP_HX_REQUEST="true")
    client.post("/accounts/login/", {"username": "dave", "password": PASSWORD})
    client.post("/accounts/logout/")
    client.post("/accounts/login/", {"username": "erin", "password": PASSWORD})
    assert Battle.objects.get().user_id == dave.pk
