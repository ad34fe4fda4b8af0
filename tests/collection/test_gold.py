"""Gold items: known answers served as unmarked copies, first to new contributors, checked when
answered and resolved by the reliability refresh."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from collection import tasks
from collection.management.commands.seed_gold_items import STARTER
from collection.models import (
    Assignment,
    GoldCopy,
    GoldItem,
    ItemStatus,
    QuestItem,
    Reliability,
    XpEntry,
    XpState,
)
from tests.collection.helpers import make_item
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _item_on_page(body: str) -> QuestItem:
    found = re.search(r'data-item-id="(\d+)"', body)
    assert found, body
    return QuestItem.objects.get(id=int(found.group(1)))


def _assignment_on_page(body: str) -> Assignment:
    found = re.search(r"/quests/a/(\d+)/submit/", body)
    assert found, body
    return Assignment.objects.get(id=int(found.group(1)))


ATTRIBUTE = re.compile(r"([\w-]+)=")
TEST_HOOK = re.compile(r'data-testid="([\w-]+)"')


def _keyless(hook: str) -> str:
    """A reply's hook without its key: rankings of two and of three replies look alike."""
    return re.sub(r"^(reply|rank)-\w+$", r"\1-*", hook)


def _markup(body: str) -> set[str]:
    """The page's structure: its tags with their attribute names and test hooks, without text,
    IDs or URLs (as a set: rankings of two and of three replies have the same parts)."""
    section = body[body.index('<section id="quest">') : body.index("</section>")]
    return {
        " ".join([tag, *sorted(ATTRIBUTE.findall(attrs)), *map(_keyless, TEST_HOOK.findall(attrs))])
        for tag, attrs in re.findall(r"<(\w+)([^>]*)>", section)
    }


def _gold_answer(copy: GoldCopy, *, right: bool) -> dict[str, Any]:
    keys = [r["key"] for r in copy.item.replies]
    if copy.item.type == "label":
        if right:
            return {"labels": copy.answer["labels"], "rating": str(copy.answer["rating"])}
        return {"labels": [], "rating": "5" if copy.answer["rating"] < 3 else "1"}
    top = copy.answer["top"] if right else next(k for k in keys if k != copy.answer["top"])
    rest = [k for k in keys if k != top]
    return {f"rank_{top}": "1", **{f"rank_{k}": str(n) for n, k in enumerate(rest, start=2)}}


def test_it_seeds_a_starter_set_of_gold_items_once() -> None:
    call_command("seed_gold_items")
    call_command("seed_gold_items")
    assert GoldItem.objects.count() == len(STARTER)
    assert {g.type for g in GoldItem.objects.all()} == {"rank", "label"}


def test_it_starts_a_new_contributor_on_gold_items_that_look_like_any_other(
    bob: Any, charlie: Any, settings: Any
) -> None:
    settings.QUEST_ONBOARDING_GOLD, settings.QUEST_GOLD_RATE = 2, 0.0
    call_command("seed_gold_items")
    ordinary = make_item("rank", author_id=None)
    client = _client(bob)
    seen = []
    for _ in range(2):
        body = client.get("/quests/rank/").content.decode()
        item = _item_on_page(body)
        copy = GoldCopy.objects.get(item=item, user=bob)
        assert copy.gold.prompt == item.prompt and item.status == ItemStatus.CLOSED
        assert item.id > ordinary.id  # a fresh ID from the same sequence, made when served
        seen.append(copy.gold_id)
        assignment = _assignment_on_page(body)
        response = client.post(f"/quests/a/{assignment.id}/submit/", _gold_answer(copy, right=True))
        assert response.status_code == 200
        # Pending, as any ranking's XP is until the others answer.
        assert XpEntry.objects.get(assignment=assignment).state == XpState.PENDING
    assert len(set(seen)) == 2
    gold_page = client.get("/quests/rank/")  # onboarding is over: the ordinary item now
    assert _item_on_page(gold_page.content.decode()) == ordinary

    # The page of a gold copy and of an ordinary item have the same structure.
    gold_body = _client(charlie).get("/quests/rank/").content.decode()
    assert GoldCopy.objects.filter(item=_item_on_page(gold_body)).exists()
    assert _markup(gold_body) == _markup(gold_page.content.decode())
    assert "gold" not in gold_body.lower()


def test_it_mixes_gold_items_in_at_the_configured_rate(bob: Any, settings: Any) -> None:
    settings.QUEST_ONBOARDING_GOLD, settings.QUEST_GOLD_RATE = 0, 1.0
    call_command("seed_gold_items")
    make_item("label")
    body = _client(bob).get("/quests/label/").content.decode()
    assert GoldCopy.objects.filter(item=_item_on_page(body), user=bob).exists()
    settings.QUEST_GOLD_RATE = 0.0
    Assignment.objects.filter(user=bob).update(state="skipped")
    body = _client(bob).get("/quests/label/").content.decode()
    assert not GoldCopy.objects.filter(item=_item_on_page(body)).exists()


def test_it_never_routes_a_gold_copy_to_anyone_else_even_after_a_skip(
    bob: Any, charlie: Any, settings: Any
) -> None:
    settings.QUEST_ONBOARDING_GOLD, settings.QUEST_GOLD_RATE = 1, 0.0
    call_command("seed_gold_items")
    client = _client(bob)
    assignment = _assignment_on_page(client.get("/quests/rank/").content.decode())
    assert client.post(f"/quests/a/{assignment.id}/skip/").status_code == 302
    assert QuestItem.objects.get(id=assignment.item_id).status == ItemStatus.CLOSED
    settings.QUEST_ONBOARDING_GOLD = 0
    body = _client(charlie).get("/quests/rank/").content.decode()
    assert 'data-testid="quest-empty"' in body


def test_it_checks_gold_answers_and_resolves_their_xp_on_the_refresh(
    bob: Any, settings: Any
) -> None:
    settings.QUEST_ONBOARDING_GOLD, settings.QUEST_GOLD_RATE = 4, 0.0
    settings.QUEST_RELIABILITY_MIN = 0.0
    call_command("seed_gold_items")
    client = _client(bob)
    for kind, right in (("rank", True), ("rank", False), ("label", True), ("label", False)):
        body = client.get(f"/quests/{kind}/").content.decode()
        copy = GoldCopy.objects.get(item=_item_on_page(body))
        assignment = _assignment_on_page(body)
        client.post(f"/quests/a/{assignment.id}/submit/", _gold_answer(copy, right=right))
        copy.refresh_from_db()
        assert copy.right is right
    assert not XpEntry.objects.filter(user=bob).exclude(state=XpState.PENDING).exists()

    tasks.refresh_reliabilities()

    states = {
        copy.right: set(
            XpEntry.objects.filter(assignment__item=copy.item).values_list("state", flat=True)
        )
        for copy in GoldCopy.objects.filter(user=bob)
    }
    assert states == {True: {XpState.SETTLED}, False: {XpState.REVERSED}}
    outcomes = set(Assignment.objects.filter(user=bob).values_list("outcome", flat=True))
    assert outcomes == {
        "checked against a known answer: right",
        "checked against a known answer: wrong",
    }
    reliability = Reliability.objects.get(user=bob)
    assert (reliability.gold_answered, reliability.gold_right) == (4, 2)
    profile = client.get("/me/").content.decode()
    assert "checked against a known answer: wrong" in profile


def test_it_refuses_an_unsound_gold_item_in_the_admin() -> None:
    client = _client(UserFactory.create(username="root", is_staff=True, is_superuser=True))
    form = {
        "name": "bad-one",
        "type": "rank",
        "prompt": "2 + 2?",
        "replies": '[{"key": "a", "text": "4"}, {"key": "b", "text": "5"}]',
        "answer": '{"top": "c"}',
        "note": "",
        "active": "on",
    }
    response = client.post("/admin/collection/golditem/add/", form)
    assert response.status_code == 200
    assert "The answer names the best reply" in response.content.decode()
    assert not GoldItem.objects.exists()
    response = client.post("/admin/collection/golditem/add/", form | {"answer": '{"top": "a"}'})
    assert response.status_code == 302
    assert GoldItem.objects.get().answer == {"top": "a"}
