"""The researcher API: tokens and their scopes, pagination, rate limits, leaderboards, battles and
dataset versions with their files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from arena.apitokens import TokenError, token_create, token_revoke
from arena.leaderboard.services import leaderboard_refresh
from collection import datasets, tasks
from collection.models import Dataset, DatasetVersion
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db


def _client(raw: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {raw}"})


@pytest.fixture
def version(django_capture_on_commit_callbacks: Any) -> DatasetVersion:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    for k in range(3):
        battle_vote(a, b, "a", prompt=f"question {k}", text_a=f"good {k}", text_b=f"bad {k}")
    dataset = Dataset.objects.create(name="api-set", sources=["battles"], steps=["dedup"])
    with django_capture_on_commit_callbacks(execute=False):
        created = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(created.id)
    return DatasetVersion.objects.get(id=created.id)


def test_it_answers_401_without_a_token_or_with_a_revoked_one_and_403_without_the_scope(
    bob: User, version: DatasetVersion
) -> None:
    url = f"/api/v1/datasets/versions/{version.id}"
    _, full = token_create(user=bob, name="all")
    narrow_row, narrow = token_create(user=bob, name="boards only", scopes=["leaderboard:read"])
    session = Client()
    session.force_login(bob)

    assert Client().get(url).status_code == 401
    assert session.get(url).status_code == 401  # the API takes tokens, not sessions
    assert _client("ludus_not-a-token").get(url).status_code == 401
    assert _client(full).get(url).status_code == 200
    response = _client(narrow).get(url)
    assert response.status_code == 403 and "datasets:read" in response.json()["detail"]
    assert _client(narrow).get("/api/v1/battles").status_code == 403
    token_revoke(user=bob, token_id=narrow_row.id)
    assert _client(narrow).get(url).status_code == 401
    bob.is_active = False
    bob.save()
    assert _client(full).get(url).status_code == 401


def test_it_refuses_an_unknown_scope(bob: User) -> None:
    with pytest.raises(TokenError):
        token_create(user=bob, name="x", scopes=["everything"])


def test_it_pages_battles_and_dataset_versions(bob: User, version: DatasetVersion) -> None:
    _, raw = token_create(user=bob, name="pages")
    client = _client(raw)
    first = client.get("/api/v1/battles?limit=2").json()
    assert len(first["items"]) == 2 and first["next_offset"] == 2
    rest = client.get("/api/v1/battles?limit=2&offset=2").json()
    assert len(rest["items"]) == 1 and rest["next_offset"] is None
    assert {r["winner"] for r in first["items"] + rest["items"]} == {"model_a"}
    assert all(len(r["battle_id"]) == 24 for r in first["items"])  # the export id, not the UUID
    assert client.get("/api/v1/battles?limit=0").status_code == 422

    versions = client.get("/api/v1/datasets/versions").json()
    assert [v["id"] for v in versions["items"]] == [version.id]
    listed = versions["items"][0]
    assert listed["content_hash"] == version.content_hash and listed["rows"] == 3
    sft = client.get(listed["files"]["sft"])
    lines = [json.loads(line) for line in b"".join(sft.streaming_content).splitlines()]  # type: ignore[attr-defined]
    assert [m["messages"][-1]["content"] for m in lines] == ["good 0", "good 1", "good 2"]
    assert client.get(f"/api/v1/datasets/versions/{version.id}/files/xml").status_code == 404


def test_it_serves_the_current_leaderboard_and_its_snapshots(
    bob: User, version: DatasetVersion
) -> None:
    _, raw = token_create(user=bob, name="boards", scopes=["leaderboard:read"])
    client = _client(raw)
    assert client.get("/api/v1/leaderboard").status_code == 404  # none computed yet
    older = leaderboard_refresh()
    a, b = ModelFactory.create(), ModelFactory.create()
    battle_vote(a, b, "b")  # a new vote: a new snapshot
    newer = leaderboard_refresh()
    assert newer.id != older.id
    current = client.get("/api/v1/leaderboard").json()
    assert current["snapshot"] == newer.id and "boards" in current["data"]
    listed = client.get("/api/v1/leaderboard/snapshots?limit=1").json()
    assert [s["snapshot"] for s in listed["items"]] == [newer.id] and listed["next_offset"] == 1
    one = client.get(f"/api/v1/leaderboard/snapshots/{older.id}").json()
    assert one["vote_hash"] == older.vote_hash


@override_settings(ARENA_EXPORTS_PER_MINUTE=2)
def test_it_limits_each_token_per_minute(bob: User, charlie: User) -> None:
    _, bobs = token_create(user=bob, name="fast")
    _, charlies = token_create(user=charlie, name="other")
    statuses = [_client(bobs).get("/api/v1/datasets/versions").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert _client(charlies).get("/api/v1/datasets/versions").status_code == 200


def test_it_publishes_an_openapi_schema_of_every_endpoint() -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/api/v1/leaderboard",
        "/api/v1/leaderboard/snapshots",
        "/api/v1/battles",
        "/api/v1/datasets/versions",
        "/api/v1/datasets/versions/{version_id}/files/{export_format}",
    }
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
