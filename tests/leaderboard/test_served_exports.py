"""Exports through the ASGI app the product serves (config.asgi: Django behind the WSGI bridge):
a streamed battle log arrives whole to a bearer token, and a body past the bridge's limit gets 413
before anything is read into storage."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from arena import apitokens, leaderboard
from config import wsgi_bridge
from config.asgi import application
from modelhub.models import Model
from tests.conftest import run_async
from tests.leaderboard.conftest import simulate_votes

pytestmark = pytest.mark.django_db(transaction=True)  # the bridge's threads see committed rows


def _request(method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return run_async(go())


def test_it_streams_a_battle_log_to_a_bearer_token_through_the_served_app(
    board_models: list[Model],
) -> None:
    simulate_votes(board_models, 25)
    snapshot = leaderboard.leaderboard_refresh(rounds=10, style_rounds=5, seed=1)
    _, raw = apitokens.token_create(user=User.objects.create_user("lab"), name="script")

    response = _request(
        "GET",
        f"/leaderboard/{snapshot.id}/battles.jsonl",
        headers={"Authorization": f"Bearer {raw}"},
    )
    refused = _request("GET", f"/leaderboard/{snapshot.id}/battles.jsonl")

    assert response.status_code == 200
    assert len(response.content.splitlines()) == 25
    assert hashlib.sha256(response.content).hexdigest() == snapshot.vote_hash
    assert refused.status_code == 401


def test_it_refuses_a_body_past_the_limit_with_413(db: None, monkeypatch: Any) -> None:
    monkeypatch.setattr(wsgi_bridge, "MAX_BODY", 1000)
    before = User.objects.count()
    form = {"username": "big", "password1": "x" * 2000, "password2": "x" * 2000}

    declared = _request("POST", "/accounts/signup/", data=form)

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(4):
            yield b"x" * 400

    chunked = _request("POST", "/accounts/signup/", content=chunks())

    assert declared.status_code == 413
    assert chunked.status_code == 413
    assert "larger than" in declared.text
    assert User.objects.count() == before
    small = _request("GET", "/accounts/signup/")
    assert small.status_code == 200
