"""Exports through the ASGI app the product serves (config.asgi): a streamed battle log arrives
whole to a bearer token (the request path's own limits: tests/test_request_path.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from arena import apitokens
from arena.leaderboard import services
from config.asgi import application
from modelhub.models import Model
from tests.helpers import run_async
from tests.leaderboard.votes import simulate_votes

pytestmark = pytest.mark.django_db(transaction=True)  # the server's threads see committed rows


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
    snapshot = services.leaderboard_refresh(rounds=10, style_rounds=5, seed=1)
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
