"""The review queue: reported and leaked battles wait for a curator; decisions are kept as
history; a rejected battle is left out of later dataset versions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from arena.models import Battle
from collection import datasets, review, tasks
from collection.models import Dataset, ReviewItem, ReviewStatus
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marked() -> dict[str, str]:
    a, b = ModelFactory.create(), ModelFactory.create()
    reported = battle_vote(a, b, "a", prompt="something rude").battle_id
    leaked = battle_vote(a, b, "b", prompt="who are you?").battle_id
    battle_vote(a, b, "a", prompt="a fine question")
    Battle.objects.filter(id=reported).update(flagged=True, flag_reason="spam")
    Battle.objects.filter(id=leaked).update(leaked=True)
    return {"reported": f"battle:{reported}", "leaked": f"battle:{leaked}"}


def test_it_queues_reported_and_leaked_battles_once(marked: dict[str, str]) -> None:
    assert review.review_queue_sync() == 2
    assert review.review_queue_sync() == 0
    items = {i.source_key: (i.kind, i.reason) for i in review.review_pending()}
    assert items == {
        marked["reported"]: ("report", "spam"),
        marked["leaked"]: ("leak", "a reply named a model"),
    }


def test_it_keeps_every_decision_and_leaves_rejected_battles_out_of_later_versions(
    marked: dict[str, str], alice: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    alice.groups.add(Group.objects.get(name="curator"))
    staff, contributor = Client(), Client()
    staff.force_login(alice)
    contributor.force_login(bob)
    page = staff.get("/datasets/review/").content.decode()
    assert marked["reported"] in page and "spam" in page
    item = ReviewItem.objects.get(source_key=marked["reported"])
    url = f"/datasets/review/{item.id}/decide/"

    assert contributor.post(url, {"status": "rejected"}).status_code == 302  # to the admin login
    assert ReviewItem.objects.get(id=item.id).status == ReviewStatus.PENDING
    staff.post(url, {"status": "approved", "note": "looks fine"})
    staff.post(url, {"status": "rejected", "note": "no, it is spam"})
    staff.post(url, {"status": "deleted"})  # refused: only approve or reject
    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED
    assert [(a.status, a.note, a.user_id) for a in item.actions.all()] == [
        ("approved", "looks fine", alice.id),
        ("rejected", "no, it is spam", alice.id),
    ]
    assert "no, it is spam" in staff.get("/datasets/review/").content.decode()

    dataset = Dataset.objects.create(name="clean", sources=["battles"], steps=[])
    with django_capture_on_commit_callbacks(execute=False):
        version = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(version.id)
    keys = {f"battle:{r['battle_id']}" for r in datasets.version_rows(version=version)}
    assert len(keys) == 2 and marked["reported"] not in keys and marked["leaked"] in keys
