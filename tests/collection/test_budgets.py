"""Daily budgets of quest answers: a precise 429 past them, nothing stored, and what is left
shown on the quest page and the profile."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from collection.models import Assignment, AssignmentState, XpEntry
from tests.collection.helpers import answer_for, make_item

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_refuses_quest_answers_past_the_daily_budget_with_429(bob: Any, settings: Any) -> None:
    settings.QUEST_ANSWERS_PER_DAY, settings.QUEST_ONBOARDING_GOLD = 1, 0
    make_item("rank")
    make_item("label")
    client = _client(bob)
    assert 'data-testid="quests-left">1<' in client.get("/quests/").content.decode()
    client.get("/quests/rank/")
    client.get("/quests/label/")  # both leased before the budget is spent
    rank, label = (Assignment.objects.get(user=bob, item__type=t) for t in ("rank", "label"))
    assert client.post(f"/quests/a/{rank.id}/submit/", answer_for("rank")).status_code == 200

    response = client.post(f"/quests/a/{label.id}/submit/", answer_for("label"))
    assert response.status_code == 429
    assert "today's 1 quests, the daily budget" in html.unescape(response.content.decode())
    label.refresh_from_db()
    assert label.state == AssignmentState.LEASED and label.answer is None
    assert XpEntry.objects.filter(user=bob).count() == 1
    page = client.get("/quests/rank/")
    assert page.status_code == 429 and 'data-testid="quest-error"' in page.content.decode()
    # A repeated submission of the answer already stored still gets its 200.
    assert client.post(f"/quests/a/{rank.id}/submit/", answer_for("rank")).status_code == 200
    for path in ("/quests/", "/me/"):
        assert 'data-testid="quests-left">0<' in client.get(path).content.decode()


def test_it_shows_no_budget_when_none_is_set(bob: Any, settings: Any) -> None:
    settings.QUEST_ANSWERS_PER_DAY, settings.ARENA_VOTES_PER_DAY = 0, 0
    body = _client(bob).get("/me/").content.decode()
    assert 'data-testid="quests-left">no limit on<' in body
    assert 'data-testid="votes-left">no limit on<' in body


def test_it_states_the_budgets_and_the_accuracy_rules_on_the_public_rules_page(
    settings: Any,
) -> None:
    settings.QUEST_ANSWERS_PER_DAY, settings.ARENA_VOTES_PER_DAY = 150, 400
    settings.QUEST_RELIABILITY_MIN = 0.65
    body = Client().get("/quests/rules/").content.decode()
    assert "150 quest answers" in body and "400 arena votes" in body
    assert "below 0.65" in body and "Some items have known answers" in body
