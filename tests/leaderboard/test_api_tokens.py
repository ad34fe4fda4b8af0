"""Researchers' API tokens: made on the account page or by a command, shown once, stored hashed,
accepted by every export as a bearer token, rate limited, revocable."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from arena.leaderboard import services
from arena.models import ApiToken, LeaderboardSnapshot
from modelhub.models import Model
from tests.leaderboard.votes import simulate_votes

ROUNDS = {"rounds": 20, "style_rounds": 10, "elo_rounds": 5, "seed": 3}
EXPORTS = ("export.json", "export.csv", "battles.jsonl")


@pytest.fixture
def snapshot(board_models: list[Model]) -> LeaderboardSnapshot:
    simulate_votes(board_models, 12)
    return services.leaderboard_refresh(**ROUNDS)


def _make_token(client: Client, name: str = "nightly") -> str:
    response = client.post("/accounts/tokens/", {"name": name})
    assert response.status_code == 200
    found = re.search(r"<code>(ludus_[\w-]+)</code>", response.content.decode())
    assert found, "the new token is shown on the reply"
    return found.group(1)


def _browser(username: str = "rita") -> tuple[Client, User]:
    user = User.objects.create_user(username, password="pw")
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client, user


def test_it_shows_a_new_token_once_and_stores_only_its_hash(db: None) -> None:
    client, user = _browser()

    raw = _make_token(client)

    stored = ApiToken.objects.get(user=user)
    assert stored.name == "nightly"
    assert raw.startswith(stored.prefix)
    assert raw not in (stored.digest, stored.prefix)
    assert len(stored.digest) == 64
    listing = client.get("/accounts/tokens/").content.decode()
    assert stored.prefix in listing
    assert raw not in listing


def test_it_serves_every_export_to_a_bearer_token_without_a_session(
    snapshot: LeaderboardSnapshot,
) -> None:
    client, _ = _browser()
    raw = _make_token(client)
    script = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    for suffix in EXPORTS:
        response = script.get(f"/leaderboard/{snapshot.id}/{suffix}")
        assert response.status_code == 200, suffix
    exported = script.get(f"/leaderboard/{snapshot.id}/export.json").json()
    assert exported["vote_hash"] == snapshot.vote_hash
    battles = b"".join(script.get(f"/leaderboard/{snapshot.id}/battles.jsonl").streaming_content)  # type: ignore[attr-defined]
    assert len(battles.splitlines()) == snapshot.votes_counted
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize(
    "header",
    ["Bearer ludus_not-a-real-token", "Bearer ", "Basic cml0YTpwdw==", "Bearer " + "x" * 500],
)
def test_it_refuses_bad_credentials_with_401(snapshot: LeaderboardSnapshot, header: str) -> None:
    response = Client(HTTP_AUTHORIZATION=header).get(f"/leaderboard/{snapshot.id}/export.json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="ludus"'
    assert "error" in response.json()


def test_it_refuses_a_revoked_token_and_a_deactivated_account(
    snapshot: LeaderboardSnapshot,
) -> None:
    client, user = _browser()
    revoked, kept = _make_token(client, "old"), _make_token(client, "new")
    token = ApiToken.objects.get(name="old")

    assert client.post(f"/accounts/tokens/{token.id}/revoke/").status_code == 302

    url = f"/leaderboard/{snapshot.id}/export.json"
    assert Client(HTTP_AUTHORIZATION=f"Bearer {revoked}").get(url).status_code == 401
    assert Client(HTTP_AUTHORIZATION=f"Bearer {kept}").get(url).status_code == 200
    user.is_active = False
    user.save()
    assert Client(HTTP_AUTHORIZATION=f"Bearer {kept}").get(url).status_code == 401


def test_it_does_not_let_one_account_revoke_anothers_token(db: None) -> None:
    owner, _ = _browser("owner")
    _make_token(owner)
    token = ApiToken.objects.get()
    other, _ = _browser("mallory")

    response = other.post(f"/accounts/tokens/{token.id}/revoke/")

    assert response.status_code == 404
    assert ApiToken.objects.filter(id=token.id).exists()


def test_it_needs_csrf_and_a_name_to_create_a_token(db: None) -> None:
    user = User.objects.create_user("csrf", password="pw")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)

    assert strict.post("/accounts/tokens/", {"name": "x"}).status_code == 403
    client, _ = _browser("named")
    assert client.post("/accounts/tokens/", {"name": "   "}).status_code == 400
    assert not ApiToken.objects.exists()
    assert Client().get("/accounts/tokens/").status_code == 302  # login first


@override_settings(ARENA_EXPORTS_PER_MINUTE=2)
def test_it_rate_limits_exports_per_account(snapshot: LeaderboardSnapshot) -> None:
    client, _ = _browser()
    raw = _make_token(client)
    script = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    url = f"/leaderboard/{snapshot.id}/export.csv"

    codes = [script.get(url).status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    assert client.get(url).status_code == 429  # the same account through its browser session


def test_the_command_creates_lists_and_revokes_tokens(snapshot: LeaderboardSnapshot) -> None:
    User.objects.create_user("lab", password="pw")
    out = StringIO()

    call_command("apitoken", "create", "lab", "--name", "cluster", stdout=out)
    raw = out.getvalue().strip()

    url = f"/leaderboard/{snapshot.id}/export.json"
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get(url).status_code == 200
    listing = StringIO()
    call_command("apitoken", "list", "lab", stdout=listing)
    token = ApiToken.objects.get()
    assert f"{token.id}\tlab\t{token.prefix}" in listing.getvalue()
    call_command("apitoken", "revoke", str(token.id), stdout=StringIO())
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get(url).status_code == 401
    with pytest.raises(CommandError):
        call_command("apitoken", "create", "nobody", "--name", "x")
