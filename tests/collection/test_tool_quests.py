"""Tool-use quests: a voted tools battle whose replies called tools asks "which answer used its
tools better?" (a ranking) and "was this call right?" (a label per reply that called one)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from arena.models import Vote
from arena.selectors import Requester
from arena.services import vote_cast
from collection import services
from collection.models import ItemStatus, QuestItem, XpEntry, XpState
from collection.tasks import quests_from_vote
from modelhub.models import Generation
from tests.collection.helpers import claim, make_item
from tests.factories import ModelFactory, UserFactory
from tests.helpers import wait_for
from tests.leaderboard.votes import make_vote

pytestmark = pytest.mark.django_db

CALL = {
    "call": "call_1",
    "id": "chatcmpl-tool-8f3e",
    "name": "calculator",
    "arguments": '{ "expression":"<b>6*7</b>" }',
    "result": "<script>42</script>",
    "error": "",
    "duration_ms": 3.2,
}


def _tools_vote(choice: str = "a", calls_a: list[Any] | None = None) -> Vote:
    vote = make_vote(ModelFactory.create(), ModelFactory.create(), choice, prompt="What is 6*7?")
    vote.battle.tools = ["calculator"]
    vote.battle.save(update_fields=["tools"])
    Generation.objects.filter(id=vote.turn.generation_a_id).update(
        tool_calls=[CALL] if calls_a is None else calls_a
    )
    return vote


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_spawns_tool_use_quests_from_a_voted_tools_battle() -> None:
    vote = _tools_vote("a")
    quests_from_vote(vote.id)
    quests_from_vote(vote.id)  # a redelivered task spawns nothing more
    items = list(QuestItem.objects.order_by("type", "source"))
    assert [(i.type, i.focus, i.source) for i in items] == [
        ("label", "tools", f"vote:{vote.id}:tools:a"),
        ("rank", "tools", f"vote:{vote.id}:tools"),
    ]
    label, rank = items
    shown = {"name": "calculator", "arguments": CALL["arguments"], "result": CALL["result"]}
    assert rank.replies == [
        {"key": "a", "text": "answer a", "tool_calls": [shown | {"error": ""}]},
        {"key": "b", "text": "answer b", "tool_calls": []},
    ]
    assert label.replies == rank.replies[:1]
    assert "call_1" not in str(rank.replies) and "3.2" not in str(rank.replies)


def test_it_spawns_no_tool_use_quests_without_tools_or_calls() -> None:
    plain = make_vote(ModelFactory.create(), ModelFactory.create(), "a")
    quests_from_vote(plain.id)
    silent = _tools_vote("b", calls_a=[])
    quests_from_vote(silent.id)
    assert not QuestItem.objects.exists()
    disputed = make_vote(ModelFactory.create(), ModelFactory.create(), "tie")
    quests_from_vote(disputed.id)
    assert list(QuestItem.objects.values_list("type", "focus")) == [("rank", "")]


def test_it_shows_tool_use_cards_and_the_calls_escaped(bob: Any) -> None:
    quests_from_vote(_tools_vote("a").id)
    make_item("rank")
    client = _client(bob)
    home = client.get("/quests/").content.decode()
    assert 'data-testid="quest-card" data-quest-type="rank"' in home  # the general card stays
    for kind in ("rank", "label"):
        assert (
            f'href="/quests/{kind}/?focus=tools" data-testid="quest-card" '
            f'data-quest-type="{kind}" data-quest-focus="tools"'
        ) in home
    assert "Which answer used its tools better?" in home and "Was this call right?" in home

    page = client.get("/quests/rank/?focus=tools").content.decode()
    assert 'data-quest-type="rank" data-quest-focus="tools"' in page
    assert 'data-testid="tool-call" data-tool-name="calculator"' in page
    assert "{&quot;expression&quot;: &quot;&lt;b&gt;6*7&lt;/b&gt;&quot;}" in page
    assert "&lt;script&gt;42&lt;/script&gt;" in page and "<script>42" not in page
    assert 'data-testid="tool-calls-b">No tool calls.' in page

    page = client.get("/quests/label/?focus=tools").content.decode()
    assert 'data-quest-type="label" data-quest-focus="tools"' in page
    assert 'data-testid="tool-call" data-tool-name="calculator"' in page
    for label in ("tool_right", "tool_wrong", "tool_arguments_wrong", "tool_needless"):
        assert f'data-testid="label-{label}"' in page
    assert 'data-testid="label-helpful"' not in page


def test_it_routes_a_tools_card_only_to_tool_use_items(bob: Any) -> None:
    make_item("rank", priority=5)
    quests_from_vote(_tools_vote("a").id)
    client = _client(bob)
    assert client.get("/quests/rank/?focus=nonsense").status_code == 404
    assert client.get("/quests/reference/?focus=tools").status_code == 404
    page = client.get("/quests/rank/?focus=tools").content.decode()
    assert 'data-quest-focus="tools"' in page
    charlie = UserFactory.create()
    assert claim(charlie, "rank").item.focus == ""  # the general card: best item of the type first


def test_it_settles_tool_use_answers_like_other_quests() -> None:
    quests_from_vote(_tools_vote("a").id)
    users = [UserFactory.create() for _ in range(3)]
    for user, first, labels in zip(
        users, ("a", "a", "b"), (["tool_right"], ["tool_right", "helpful"], ["tool_wrong"]),
        strict=True,
    ):  # fmt: skip
        client = _client(user)
        for kind, data in (
            ("rank", {f"rank_{first}": "1", f"rank_{'b' if first == 'a' else 'a'}": "2"}),
            ("label", {"labels": labels, "rating": "4" if first == "a" else "1"}),
        ):
            assert client.get(f"/quests/{kind}/?focus=tools").status_code == 200
            assignment = services.assignment_claim(user_id=user.pk, quest_type=kind, focus="tools")
            assert assignment is not None
            response = client.post(f"/quests/a/{assignment.id}/submit/", data)
            assert response.status_code == 200
            assert 'href="/quests/' + kind + '/?focus=tools" data-testid="quest-next"' in (
                response.content.decode()
            )
    rank = QuestItem.objects.get(type="rank")
    label = QuestItem.objects.get(type="label")
    assert rank.status == label.status == ItemStatus.DONE
    assert rank.consensus is not None and rank.consensus["top"] == "a"
    assert label.consensus == {"rating": 4, "labels": ["tool_right"]}  # "helpful" is not asked
    states = [
        list(
            XpEntry.objects.filter(user=u, key__startswith="assignment")
            .order_by("id")
            .values_list("state", flat=True)
        )
        for u in users
    ]
    assert states == [[XpState.SETTLED] * 2, [XpState.SETTLED] * 2, [XpState.REVERSED] * 2]


@pytest.mark.django_db(transaction=True)
def test_it_hears_a_first_verdict_on_a_tools_battle_cast_in_the_arena(celery_worker: str) -> None:
    vote = _tools_vote("a")
    turn, battle = vote.turn, vote.battle
    vote.delete()
    vote_cast(
        battle_id=battle.id, turn_id=turn.id, requester=Requester(None, "s-board"), choice="b"
    )
    item = wait_for(
        lambda: QuestItem.objects.filter(type="rank", focus="tools").first(), timeout=20
    )
    assert item.prompt == "What is 6*7?"


def test_it_lists_the_tool_use_labels_on_the_rules_page() -> None:
    body = Client().get("/quests/rules/").content.decode()
    assert "Should not have called a tool" in body and "Result misused" in body
