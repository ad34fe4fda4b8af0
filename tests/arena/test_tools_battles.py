"""Tools battles: two anonymous models with the same tools, their calls streamed and shown, votes
in their own category."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from arena.models import Battle, Vote
from arena.selectors import battle_log_rows
from modelhub.models import Model
from tests.arena.helpers import finish_turn, last_turn
from tests.factories import EndpointFactory, ModelFactory
from tests.helpers import run_async
from tests.streaming import collect_frames

pytestmark = pytest.mark.django_db


@pytest.fixture
def tool_models(db: None) -> list[Model]:
    """Two models with tools (different sets) and one without, none read by a worker."""
    Model.objects.update(enabled=False)
    models = [
        ModelFactory.create(name="calc-a", tools=["calculator", "convert", "search"]),
        ModelFactory.create(name="calc-b", tools=["calculator", "search", "crop_image"]),
        ModelFactory.create(name="plain-c"),
    ]
    for model in models:
        model.queue = "gen.arena-unit-tests"
        model.save(update_fields=["queue"])
        EndpointFactory.create(model=model)
    return models


def _start(client: Client, prompt: str = "What is 6 * 7?", **extra: str) -> Battle:
    response = client.post("/battles/", {"prompt": prompt, "tools": "1", **extra})
    assert response.status_code == 302, response.content[:500]
    return Battle.objects.get(id=response["Location"].split("/")[-2])


def test_it_gives_both_models_of_a_tools_battle_the_same_tools(tool_models: list[Model]) -> None:
    for _ in range(5):  # the draw is random: never the model without tools
        battle = _start(Client())
        assert {battle.model_a.name, battle.model_b.name} == {"calc-a", "calc-b"}  # type: ignore[union-attr]
        assert battle.tools == ["calculator", "search"]  # both enabled, in the arena's order
        turn = last_turn(battle)
        assert turn.generation_a.tools == turn.generation_b.tools == battle.tools  # type: ignore[union-attr]
        assert "tools" in battle.categories


def test_it_keeps_tools_out_of_ordinary_battles(tool_models: list[Model]) -> None:
    response = Client().post("/battles/", {"prompt": "What is 6 * 7?"})
    battle = Battle.objects.get(id=response["Location"].split("/")[-2])
    assert battle.tools == [] and "tools" not in battle.categories
    assert last_turn(battle).generation_a.tools == []


def test_it_says_when_fewer_than_two_models_have_tools(tool_models: list[Model]) -> None:
    Model.objects.filter(name="calc-b").update(tools=[])
    response = Client().post("/battles/", {"prompt": "2 + 2", "tools": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 503
    assert b"Fewer than two models with tools are available" in response.content


def test_the_tools_page_starts_tools_battles(tool_models: list[Model]) -> None:
    html = Client().get("/tools/").content.decode()
    assert 'name="tools" value="1"' in html and "uses its tools better" in html
    assert 'name="tools"' not in Client().get("/").content.decode()


def test_it_shows_stored_calls_normalised_and_votes_count_in_the_tools_category(
    tool_models: list[Model],
) -> None:
    client = Client()
    battle = _start(client)
    turn = last_turn(battle)
    finish_turn(turn)
    call = {
        "call": "call_1",
        "id": "chatcmpl-tool-8f3e",  # an engine's own id format
        "name": "calculator",
        "arguments": '{ "expression":"6*7" }',
        "result": "42",
        "error": "",
        "duration_ms": 3.2,
    }
    type(turn.generation_a).objects.filter(id=turn.generation_a_id).update(tool_calls=[call])
    html = client.get(f"/b/{battle.id}/").content.decode()
    assert 'data-testid="tool-call" data-tool-name="calculator" data-call="call_1"' in html
    assert "{&quot;expression&quot;: &quot;6*7&quot;}" in html  # one canonical JSON form
    assert "chatcmpl-tool" not in html and "3.2" not in html
    response = client.post(f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": "a"})
    assert response.status_code in (200, 302)
    assert Vote.objects.get(battle=battle).anony
    [row] = battle_log_rows(extra=True)  # what the leaderboard's categories are counted from
    assert "tools" in row["categories"] and row["winner"] == "model_a"


def test_it_starts_a_new_tools_battle_from_new_round_after_the_vote(
    tool_models: list[Model],
) -> None:
    client = Client()
    battle = _start(client)
    turn = last_turn(battle)
    finish_turn(turn)
    new_round = 'href="/tools/" data-testid="new-round"'
    assert new_round in client.get(f"/b/{battle.id}/").content.decode()
    verdict = client.post(
        f"/b/{battle.id}/vote/", {"turn": turn.id, "choice": "tie"}, HTTP_HX_REQUEST="true"
    )
    assert verdict.status_code == 200 and new_round in verdict.content.decode()
    assert new_round in client.get(f"/b/{battle.id}/").content.decode()
    # An ordinary battle's new round stays in the plain arena.
    plain = Battle.objects.get(
        id=client.post("/battles/", {"prompt": "Hi"})["Location"].split("/")[-2]
    )
    finish_turn(last_turn(plain))
    verdict = client.post(
        f"/b/{plain.id}/vote/", {"turn": last_turn(plain).id, "choice": "a"}, HTTP_HX_REQUEST="true"
    )
    assert 'href="/" data-testid="new-round"' in verdict.content.decode()


pool = pytest.mark.django_db(transaction=True)


@pool
def test_it_streams_both_sides_tool_calls_through_the_pool(celery_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    Model.objects.update(enabled=False)
    for name in ("tools-left", "tools-right"):
        model = ModelFactory.create(name=name, served_name="fake-tools", tools=["calculator"])
        EndpointFactory.create(model=model, base_url=upstream.base_url)
    client = Client()
    battle = _start(client, "What is 12 * (3 + 4)?")
    turn = last_turn(battle)
    key = client.session.session_key
    assert key is not None
    sides: list[list[dict[str, Any]]] = []
    for generation in (turn.generation_a, turn.generation_b):
        assert generation is not None
        frames = run_async(collect_frames(key, str(generation.id), timeout=30))
        assert frames[-1]["type"] == "done"
        sides.append([{k: f[k] for k in f if k not in ("id", "seq")} for f in frames])
    # The two sides' call frames are the same: nothing in them tells the models apart.
    calls = [[f for f in frames if f["type"].startswith("tool_")] for frames in sides]
    assert (
        calls[0]
        == calls[1]
        == [
            {
                "type": "tool_call",
                "call": "call_1",
                "name": "calculator",
                "arguments": '{"expression": "12 * (3 + 4)"}',
            },
            {"type": "tool_result", "call": "call_1", "result": "84", "error": ""},
        ]
    )
    html = client.get(f"/b/{battle.id}/").content.decode()
    assert html.count('data-testid="tool-call"') == 2
    assert "tools-left" not in html and "tools-right" not in html
