"""The moderation scan: battles whose prompt or answers read as offensive wait in the curators'
review queue; clean battles do not, and a battle is queued once however often the scan runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.test import Client

from collection import review, tasks
from collection.models import ReviewItem, ReviewKind
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.delete(review.MODERATION_MARK_KEY)
    monkeypatch.setattr(review, "MODERATION_SETTLE", timedelta(0))


def test_it_queues_battles_whose_prompt_or_answer_is_offensive(alice: User) -> None:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    rude_prompt = battle_vote(a, b, "a", prompt="you are a stupid fucking idiot, shut up")
    rude_answer = battle_vote(
        a, b, "b", prompt="tell me about owls", text_b="shut up you worthless piece of shit"
    )
    clean = battle_vote(a, b, "tie", prompt="what is a prime number?", text_a="A number.")

    assert tasks.scan_offensive_battles() == 2

    queued = {item.source_key: item for item in ReviewItem.objects.all()}
    assert set(queued) == {f"battle:{rude_prompt.battle_id}", f"battle:{rude_answer.battle_id}"}
    assert f"battle:{clean.battle_id}" not in queued
    assert all(item.kind == ReviewKind.MODERATION for item in queued.values())
    assert all(item.reason.startswith("offensive language (score ") for item in queued.values())

    alice.groups.add(Group.objects.get(name="curator"))
    client = Client()
    client.force_login(alice)
    page = client.get("/datasets/review/", {"kind": "moderation"}).content.decode()
    assert "offensive language" in page


def test_it_reads_each_battle_once_and_goes_on_from_where_it_stopped() -> None:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    battle_vote(a, b, "a", prompt="you are a stupid fucking idiot, shut up")
    assert tasks.scan_offensive_battles() == 1
    assert tasks.scan_offensive_battles() == 0  # nothing new since the last scan

    later = battle_vote(a, b, "b", prompt="what a bunch of worthless shit")
    assert tasks.scan_offensive_battles() == 1
    assert ReviewItem.objects.filter(source_key=f"battle:{later.battle_id}").exists()

    cache.delete(review.MODERATION_MARK_KEY)  # the mark lost: a rescan queues nothing twice
    assert tasks.scan_offensive_battles() == 0
    assert ReviewItem.objects.count() == 2


def test_it_queues_nothing_below_the_threshold(settings: object) -> None:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    battle_vote(a, b, "a", prompt="you are a stupid fucking idiot, shut up")
    settings.REVIEW_OFFENSIVE_THRESHOLD = 1.0  # type: ignore[attr-defined]

    assert tasks.scan_offensive_battles() == 0
    assert not ReviewItem.objects.exists()


def test_it_leaves_battles_whose_answers_may_still_stream_for_the_next_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    battle_vote(a, b, "a", prompt="you are a stupid fucking idiot, shut up")
    monkeypatch.setattr(review, "MODERATION_SETTLE", timedelta(minutes=10))

    assert tasks.scan_offensive_battles() == 0
    monkeypatch.setattr(review, "MODERATION_SETTLE", timedelta(0))
    assert tasks.scan_offensive_battles() == 1
