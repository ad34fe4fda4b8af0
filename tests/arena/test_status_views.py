"""The staff status page: the serving pool and the vote rate, refreshed by htmx."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from arena.models import Battle
from tests.arena.helpers import finish_turn, last_turn

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_shows_the_status_page_to_staff_only(
    arena_models: list[Any], alice: User, bob: User
) -> None:
    response = Client().get("/status/")
    assert response.status_code == 302 and "/login" in response["Location"]
    assert _client(bob).get("/status/").status_code == 302
    staff = _client(alice)
    page = staff.get("/status/")
    assert page.status_code == 200
    assert b"alpha-7b" in page.content and b"hx-trigger" in page.content
    partial = staff.get("/status/", HTTP_HX_REQUEST="true")
    assert b"alpha-7b" in partial.content and b"<html" not in partial.content


def test_it_counts_the_votes_of_the_last_minute(arena_models: list[Any], alice: User) -> None:
    staff = _client(alice)
    assert b'data-testid="votes-per-minute">0<' in staff.get("/status/").content
    voter = Client()
    voter.post("/battles/", {"prompt": "hello there"}, HTTP_HX_REQUEST="true")
    battle = Battle.objects.get()
    turn = last_turn(battle)
    finish_turn(turn)
    voted = voter.post(
        f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": "a"}, HTTP_HX_REQUEST="true"
    )
    assert voted.status_code == 200
    partial = staff.get("/status/", HTTP_HX_REQUEST="true")
    assert b'data-testid="votes-per-minute">1<' in partial.content


def test_it_shows_staff_endpoints_without_their_credentials(monkeypatch, alice: User) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import EndpointFactory, ModelFactory

    monkeypatch.setenv("LUDUS_KEY_TEST_UPSTREAM", "sk-live-4f9c2a7e1b3d5f60")
    EndpointFactory.create(
        base_url="https://ops:hunter2secret@gpu-1:8000/v1",
        api_key_env="LUDUS_KEY_TEST_UPSTREAM",
        healthy=False,
        last_error="401: key sk-live-4f9c2a7e1b3d5f60 refused for https://ops:hunter2secret@gpu-1",
        model=ModelFactory.create(name="leaky-model"),
    )
    page = _client(alice).get("/status/").content
    assert b"https://gpu-1:8000/v1" in page and b"leaky-model" in page
    assert b"hunter2secret" not in page and b"sk-live-4f9c2a7e1b3d5f60" not in page
    assert b"401: key [redacted] refused" in page
