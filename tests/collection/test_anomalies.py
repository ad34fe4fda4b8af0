"""Voter anomalies: the scan holds a coordinated group out of the published boards, staff see the
evidence and release or confirm each voter."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from arena import tasks as arena_tasks
from arena.leaderboard import selectors
from arena.models import HoldStatus, LeaderboardSnapshot, Vote, VoterHold
from collection import tasks
from modelhub.models import Model
from tests.factories import EndpointFactory, ModelFactory, UserFactory
from tests.leaderboard.votes import make_vote

ROUNDS = {"rounds": 20, "style_rounds": 5, "elo_rounds": 5, "min_votes": 0}
HONEST, HONEST_VOTES, GROUP, GROUP_VOTES = 30, 10, 6, 8


@pytest.fixture
def rigged_arena(db: None) -> dict[str, Any]:
    """300 honest votes from 30 browser sessions, and a group of six accounts whose 48 votes all
    go to gamma, a mid-ranked model, in battles it is part of."""
    Model.objects.update(enabled=False)
    strength = {"alpha": 3.0, "beta": 2.0, "gamma": 1.5, "delta": 1.0}
    models = {name: ModelFactory.create(name=name) for name in strength}
    for model in models.values():
        EndpointFactory.create(model=model)
    rng = random.Random(3)
    # A vote a minute, each voter's votes far enough apart to read the answers.
    start, ticks = timezone.now() - timedelta(hours=8), itertools.count()

    def clock() -> datetime:
        return start + timedelta(minutes=next(ticks))

    for j in range(HONEST):
        for _ in range(HONEST_VOTES):
            a, b = rng.sample(list(strength), 2)
            won_a = rng.random() < strength[a] / (strength[a] + strength[b])
            vote = make_vote(models[a], models[b], "a" if won_a else "b")
            Vote.objects.filter(id=vote.id).update(session_key=f"honest-{j}", created_at=clock())
    group = [UserFactory.create(username=f"fan-{j}") for j in range(GROUP)]
    for user in group:
        for k in range(GROUP_VOTES):
            other = models[rng.choice(["alpha", "beta", "delta"])]
            if k % 2:
                vote = make_vote(models["gamma"], other, "a")
            else:
                vote = make_vote(other, models["gamma"], "b")
            Vote.objects.filter(id=vote.id).update(
                user=user, session_key=f"fan-{user.pk}", created_at=clock()
            )
    return {"models": models, "group": group}


def _gamma_votes(snapshot: LeaderboardSnapshot) -> int:
    rows = snapshot.data["boards"]["bt"][""]["models"]
    return next(r["battles"] for r in rows if r["model"] == "gamma")


def test_it_holds_a_coordinated_group_out_of_the_next_snapshot_until_staff_release_it(
    rigged_arena: dict[str, Any], alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    group: list[User] = rigged_arena["group"]
    total = HONEST * HONEST_VOTES + GROUP * GROUP_VOTES
    before = arena_tasks.leaderboard_services.leaderboard_refresh(**ROUNDS)
    assert before.votes_counted == total

    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        held = tasks.scan_voter_anomalies()

    assert held == GROUP
    holds = VoterHold.objects.all()
    assert {h.user_id for h in holds} == {u.pk for u in group}
    assert all(h.status == HoldStatus.HELD for h in holds)
    hold = holds.first()
    assert hold is not None
    assert any("one-sided" in reason for reason in hold.reasons)
    assert hold.evidence["favourite"] == "gamma"
    assert hold.evidence["favourite_wins"] == GROUP_VOTES == hold.evidence["votes"]
    assert scheduled  # a full refresh publishes the change
    after = arena_tasks.leaderboard_services.leaderboard_refresh(**ROUNDS)
    assert after.votes_counted == HONEST * HONEST_VOTES
    assert after.votes_excluded["held"] == GROUP * GROUP_VOTES
    assert _gamma_votes(after) == _gamma_votes(before) - GROUP * GROUP_VOTES
    # A second scan holds nobody again.
    assert tasks.scan_voter_anomalies() == 0

    staff = Client()
    staff.force_login(alice)
    page = staff.get("/staff/anomalies/")
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count('data-testid="anomaly"') == GROUP
    assert "fan-0" in body and "gamma: won 8 of 8 decisive votes" in body

    for hold in holds[: GROUP - 1]:
        response = staff.post(f"/staff/anomalies/{hold.id}/decide/", {"decision": "release"})
        assert response.status_code == 302
    last = holds[GROUP - 1]
    staff.post(f"/staff/anomalies/{last.id}/decide/", {"decision": "confirm"})
    last.refresh_from_db()
    assert last.status == HoldStatus.CONFIRMED and last.reviewed_by_id == alice.pk
    released = arena_tasks.leaderboard_services.leaderboard_refresh(**ROUNDS)
    assert released.votes_counted == total - GROUP_VOTES
    assert released.votes_excluded["held"] == GROUP_VOTES


@pytest.fixture
def hold(charlie: User) -> VoterHold:
    from arena.leaderboard import services

    found = services.voter_hold(
        user_id=charlie.pk,
        session_key="",
        judge=f"arena_user_{charlie.pk}",
        reasons=["one-sided: 8 of 8 votes won by gamma"],
        evidence={"votes": 8},
    )
    assert found is not None
    return found


def test_it_refuses_a_bad_decision_and_changes_nothing(hold: VoterHold, alice: User) -> None:
    staff = Client()
    staff.force_login(alice)

    bad = staff.post(f"/staff/anomalies/{hold.id}/decide/", {"decision": "forget"})
    missing = staff.post("/staff/anomalies/987654/decide/", {"decision": "release"})

    assert bad.status_code == 400 and b"release or confirm" in bad.content
    assert missing.status_code == 404
    hold.refresh_from_db()
    assert hold.status == HoldStatus.HELD and hold.reviewed_at is None


def test_it_keeps_the_anomaly_pages_for_staff(hold: VoterHold, bob: User) -> None:
    contributor = Client()
    contributor.force_login(bob)

    page = contributor.get("/staff/anomalies/")
    decide = contributor.post(f"/staff/anomalies/{hold.id}/decide/", {"decision": "release"})
    anonymous = Client().get("/staff/anomalies/")

    for response in (page, decide, anonymous):
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    hold.refresh_from_db()
    assert hold.status == HoldStatus.HELD


def test_it_holds_anonymous_voters_by_their_session(db: None) -> None:
    Model.objects.update(enabled=False)
    alpha, beta, gamma = (ModelFactory.create(name=n) for n in ("alpha", "beta", "gamma"))
    for k in range(10):
        make_vote(alpha, beta, "a" if k % 2 else "b")
    held = make_vote(alpha, gamma, "a")
    Vote.objects.filter(id=held.id).update(session_key="suspect")
    other = make_vote(alpha, gamma, "a")
    Vote.objects.filter(id=other.id).update(session_key="suspect", user=UserFactory.create())
    from arena.leaderboard import services

    services.voter_hold(
        user_id=None, session_key="suspect", judge="arena_session_x", reasons=["r"], evidence={}
    )

    counted = set(selectors.counted_votes().values_list("id", flat=True))
    assert held.id not in counted and other.id in counted
    assert selectors.vote_exclusions()["held"] == 1


def test_it_scans_on_the_default_queue_every_five_minutes() -> None:
    from worker.celery import app

    entry = app.conf.beat_schedule["scan-voter-anomalies"]
    assert entry["task"] == "collection.tasks.scan_voter_anomalies"
    assert entry["schedule"] == 300.0 and entry["options"]["queue"] == "default"
