"""The router: work where it is needed, never the user's own, overlap and leases respected."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import close_old_connections
from django.utils import timezone

from collection import services
from collection.models import Assignment, AssignmentState, ItemStatus, QuestItem
from tests.collection.helpers import claim, make_item
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_it_gives_the_highest_priority_open_item_first(bob: Any) -> None:
    make_item("rank", priority=0)
    urgent = make_item("rank", priority=5)
    assert claim(bob, "rank").item_id == urgent.id


def test_it_never_gives_a_user_their_own_work(bob: Any, charlie: Any) -> None:
    own = make_item("rank", author_id=bob.pk)
    assert services.assignment_claim(user_id=bob.pk, quest_type="rank") is None
    assert claim(charlie, "rank").item_id == own.id


def test_it_resumes_a_live_lease_instead_of_taking_another(bob: Any) -> None:
    make_item("rank")
    make_item("rank")
    first = claim(bob, "rank")
    assert claim(bob, "rank").id == first.id
    assert Assignment.objects.filter(user=bob).count() == 1


def test_it_stops_offering_an_item_once_its_overlap_is_taken(bob: Any, charlie: Any) -> None:
    item = make_item("rank", overlap=1)
    claim(bob, "rank")
    item.refresh_from_db()
    assert (item.status, item.open_slots) == (ItemStatus.FULL, 0)
    assert services.assignment_claim(user_id=charlie.pk, quest_type="rank") is None


def test_it_never_offers_a_skipped_item_again_but_gives_its_slot_back(
    bob: Any, charlie: Any
) -> None:
    item = make_item("rank", overlap=1)
    services.assignment_skip(user_id=bob.pk, assignment_id=claim(bob, "rank").id)
    assert services.assignment_claim(user_id=bob.pk, quest_type="rank") is None
    assert claim(charlie, "rank").item_id == item.id


def test_it_returns_the_slot_of_an_expired_lease(bob: Any, charlie: Any) -> None:
    make_item("rank", overlap=1)
    assignment = claim(bob, "rank")
    Assignment.objects.filter(id=assignment.id).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    assert services.assignments_expire() == 1
    assert claim(charlie, "rank").item_id == assignment.item_id


def test_it_picks_the_type_with_the_highest_bounty_when_none_is_asked(bob: Any) -> None:
    make_item("label")
    reference = make_item("reference")
    assert claim(bob).item_id == reference.id


@pytest.mark.django_db(transaction=True)
def test_it_never_gives_the_last_slot_to_two_people_at_once() -> None:
    make_item("rank", overlap=1)
    users = [UserFactory.create() for _ in range(8)]
    barrier = threading.Barrier(len(users))
    taken: list[int] = []

    def take(user: Any) -> None:
        barrier.wait()
        try:
            assignment = services.assignment_claim(user_id=user.pk, quest_type="rank")
            if assignment is not None:
                taken.append(assignment.id)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=take, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 1
    assert Assignment.objects.filter(state=AssignmentState.LEASED).count() == 1
    assert QuestItem.objects.get().open_slots == 0
