"""The tokens page lets a researcher choose what a new token may read; the API holds it to that."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from arena.models import API_SCOPES, ApiToken

pytestmark = pytest.mark.django_db


def test_it_offers_every_scope_checked_and_creates_a_token_with_the_chosen_ones(bob: User) -> None:
    client = Client()
    client.force_login(bob)
    page = client.get("/accounts/tokens/").content.decode()
    for scope in API_SCOPES:
        assert re.search(rf'name="scopes" value="{scope}" checked', page), scope

    response = client.post(
        "/accounts/tokens/",
        {"name": "boards only", "scopes_offered": "1", "scopes": ["leaderboard:read"]},
    )
    assert response.status_code == 200
    raw = re.search(r"<code>(ludus_[^<]+)</code>", response.content.decode())
    assert raw is not None
    token = ApiToken.objects.get(user=bob)
    assert token.scopes == ["leaderboard:read"]
    assert "leaderboard:read" in client.get("/accounts/tokens/").content.decode()

    script = Client(headers={"Authorization": f"Bearer {raw.group(1)}"})
    assert script.get("/api/v1/datasets/versions").status_code == 403
    assert script.get("/api/v1/leaderboard").status_code == 404  # let in: no board computed yet


def test_it_refuses_a_token_without_a_scope_or_with_an_unknown_one(bob: User) -> None:
    client = Client()
    client.force_login(bob)
    none = client.post("/accounts/tokens/", {"name": "nothing", "scopes_offered": "1"})
    assert none.status_code == 400 and "Choose at least one scope." in none.content.decode()
    # The page keeps the choice as it was posted.
    assert not re.search(r'value="battles:read" checked', none.content.decode())
    bad = client.post(
        "/accounts/tokens/",
        {"name": "all", "scopes_offered": "1", "scopes": ["battles:read", "admin:write"]},
    )
    assert bad.status_code == 400 and "admin:write" in bad.content.decode()
    assert not ApiToken.objects.exists()


def test_it_gives_every_scope_to_a_post_without_the_scope_choice(bob: User) -> None:
    client = Client()
    client.force_login(bob)
    assert client.post("/accounts/tokens/", {"name": "script"}).status_code == 200
    assert ApiToken.objects.get(user=bob).scopes == list(API_SCOPES)
