"""Finished quest items whose answers disagree wait in the review queue as "low agreement"; a
curator's rejection leaves them out of later dataset versions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from collection import datasets, review, services, tasks
from collection.models import Dataset, QuestItem, ReviewItem, ReviewKind
from tests.collection.helpers import answer_for, claim, make_item
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _answer(item_type: str, answers: list[dict[str, Any]]) -> QuestItem:
    """An item answered by as many new contributors as it wants (its overlap)."""
    item = make_item(item_type, overlap=len(answers))
    for data in answers:
        user = UserFactory.create()
        assignment = claim(user, item_type)
        assert assignment.item_id == item.id
        services.assignment_submit(user_id=user.pk, assignment_id=assignment.id, data=data)
    item.refresh_from_db()
    assert item.consensus is not None
    return item


def test_it_queues_items_whose_answers_disagree() -> None:
    split = _answer("rank", [answer_for("rank", first="a"), answer_for("rank", first="b")])
    spread = _answer(
        "label", [{"labels": [], "rating": "1"}, {"labels": [], "rating": "3"},
                  {"labels": [], "rating": "5"}],
    )  # fmt: skip

    assert review.review_queue_sync() == 2
    assert review.review_queue_sync() == 0
    items = {i.source_key: (i.kind, i.reason) for i in review.review_pending()}
    assert items == {
        f"quest:{split.id}": (
            ReviewKind.AGREEMENT, "1 of 2 answers agree with the crowd (reply A first)"
        ),
        f"quest:{spread.id}": (
            ReviewKind.AGREEMENT, "1 of 3 answers agree with the crowd (rating 3)"
        ),
    }  # fmt: skip


def test_it_leaves_items_whose_answers_agree_out_of_the_queue() -> None:
    _answer("rank", [answer_for("rank", first="a")] * 2 + [answer_for("rank", first="b")])
    _answer("label", [{"labels": ["helpful"], "rating": r} for r in ("4", "4", "5")])
    make_item("rank", overlap=3)  # not finished: nothing to judge yet

    assert review.review_queue_sync() == 0
    assert not ReviewItem.objects.exists()


def test_it_leaves_a_rejected_low_agreement_item_out_of_later_versions(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    split = _answer("rank", [answer_for("rank", first="a"), answer_for("rank", first="b")])
    agreed = _answer("rank", [answer_for("rank", first="b")] * 2)
    alice.groups.add(Group.objects.get(name="curator"))
    staff = Client()
    staff.force_login(alice)
    page = staff.get("/datasets/review/?kind=agreement").content.decode()
    assert f"quest:{split.id}" in page and "Paris is the capital." in page
    item = ReviewItem.objects.get(source_key=f"quest:{split.id}")

    staff.post(f"/datasets/review/{item.id}/decide/", {"status": "rejected"})

    dataset = Dataset.objects.create(name="ranked", sources=["quests"], steps=[])
    with django_capture_on_commit_callbacks(execute=False):
        version = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(version.id)
    assert [r["quest_item"] for r in datasets.version_rows(version=version)] == [agreed.id]
