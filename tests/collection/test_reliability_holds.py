"""The anomaly scan holds voting accounts whose stored reliability is below the bar out of the
published boards, when the estimate rests on enough answers, and never one staff reviewed."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from arena.leaderboard import services as leaderboard_services
from arena.models import HoldStatus, Vote, VoterHold
from collection import tasks
from collection.models import Reliability
from modelhub.models import Model
from tests.factories import ModelFactory, UserFactory
from tests.leaderboard.votes import make_vote


@pytest.fixture
def voters(db: None) -> dict[str, User]:
    """Three accounts casting a few even-handed votes each (nothing the anomaly tests flag)."""
    Model.objects.update(enabled=False)
    alpha, beta = ModelFactory.create(name="alpha"), ModelFactory.create(name="beta")
    users = {name: UserFactory.create(username=name) for name in ("sloppy", "thin", "careful")}
    for user in users.values():
        for k in range(4):
            vote = make_vote(alpha, beta, "a" if k % 2 else "b")
            Vote.objects.filter(id=vote.id).update(user=user, session_key=f"s-{user.pk}")
    # sloppy: a low estimate on 40 votes and answers; thin: as low, on 5; careful: reliable.
    Reliability.objects.create(user=users["sloppy"], value=0.2, votes=25, rankings=10, labels=5)
    Reliability.objects.create(user=users["thin"], value=0.2, votes=4, rankings=1)
    Reliability.objects.create(user=users["careful"], value=0.9, votes=30, rankings=20)
    return users


@override_settings(HOLD_RELIABILITY_BELOW=0.35, HOLD_RELIABILITY_MIN_ANSWERS=30)
def test_it_holds_an_account_whose_reliability_is_low_on_enough_answers(
    voters: dict[str, User], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        held = tasks.scan_voter_anomalies()

    assert held == 1
    hold = VoterHold.objects.get()
    assert hold.user_id == voters["sloppy"].pk and hold.status == HoldStatus.HELD
    assert hold.reasons == ["low reliability"]
    assert hold.evidence["reliability_estimate"] == 0.2
    assert hold.evidence["reliability_votes"] == 25
    assert hold.evidence["reliability_answers"] == 15
    assert hold.evidence["votes"] == 4


@override_settings(HOLD_RELIABILITY_BELOW=0.0)
def test_it_holds_nobody_for_reliability_when_the_bar_is_off(voters: dict[str, User]) -> None:
    assert tasks.scan_voter_anomalies() == 0
    assert not VoterHold.objects.exists()


@override_settings(HOLD_RELIABILITY_BELOW=0.35, HOLD_RELIABILITY_MIN_ANSWERS=30)
def test_it_never_holds_again_an_account_staff_released(
    voters: dict[str, User], alice: User
) -> None:
    tasks.scan_voter_anomalies()
    hold = VoterHold.objects.get()
    leaderboard_services.voter_hold_review(hold_id=hold.id, reviewer_id=alice.pk, release=True)

    assert tasks.scan_voter_anomalies() == 0
    hold.refresh_from_db()
    assert hold.status == HoldStatus.RELEASED and VoterHold.objects.count() == 1
