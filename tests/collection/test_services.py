"""Submissions, consensus, reviews and the XP ledger; the arena's votes feeding quests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from arena.selectors import Requester
from arena.services import vote_cast
from collection import selectors, services
from collection.models import Assignment, ItemStatus, QuestItem, XpEntry, XpState
from collection.tasks import quests_from_vote
from modelhub.models import Generation, GenerationStatus
from tests.collection.helpers import answer_for, claim, make_item
from tests.factories import ModelFactory, UserFactory
from tests.helpers import wait_for
from tests.leaderboard.votes import make_vote

pytestmark = pytest.mark.django_db


def _submit(user: Any, assignment: Assignment, data: dict[str, Any]) -> Assignment:
    return services.assignment_submit(user_id=user.pk, assignment_id=assignment.id, data=data)


def test_it_posts_pending_xp_that_settles_when_the_crowd_agrees() -> None:
    make_item("rank", overlap=3)
    users = [UserFactory.create() for _ in range(3)]
    for user, first in zip(users, ("a", "a", "b"), strict=True):
        _submit(user, claim(user, "rank"), answer_for("rank", first=first))
        if user is not users[-1]:
            assert selectors.xp_totals(user_id=user.pk)[1] > 0  # pending until consensus
    states = {
        u.username: XpEntry.objects.get(user=u, key__startswith="assignment").state for u in users
    }
    assert list(states.values()) == [XpState.SETTLED, XpState.SETTLED, XpState.REVERSED]
    dissent = Assignment.objects.get(user=users[2])
    assert dissent.outcome == "reply A ranked first by 2 of 3"
    assert XpEntry.objects.get(assignment=dissent).resolution == "consensus chose a"
    assert QuestItem.objects.get().status == ItemStatus.DONE


def test_it_settles_labels_near_the_crowds_rating_and_reverses_the_others() -> None:
    make_item("label", overlap=3)
    users = [UserFactory.create() for _ in range(3)]
    for user, rating in zip(users, ("4", "4", "1"), strict=True):
        _submit(user, claim(user, "label"), {"labels": ["helpful"], "rating": rating})
    states = [XpEntry.objects.get(user=u, key__startswith="assignment").state for u in users]
    assert states == [XpState.SETTLED, XpState.SETTLED, XpState.REVERSED]
    assert QuestItem.objects.get().consensus == {"rating": 4, "labels": ["helpful"]}


def test_it_settles_a_reference_answer_when_a_reviewer_accepts_it(bob: Any, charlie: Any) -> None:
    make_item("reference")
    written = _submit(bob, claim(bob, "reference"), {"text": "Paris."})
    pending = XpEntry.objects.get(assignment=written)
    assert pending.state == XpState.PENDING
    assert selectors.xp_totals(user_id=bob.pk)[1] == pending.amount
    # bob never reviews his own answer; charlie does
    assert services.assignment_claim(user_id=bob.pk, quest_type="review") is None
    _submit(charlie, claim(charlie, "review"), {"verdict": "accept"})
    written.refresh_from_db()
    assert written.outcome == "accepted by review"
    pending.refresh_from_db()
    assert (pending.state, pending.resolution) == (XpState.SETTLED, "accepted by review")
    assert selectors.xp_totals(user_id=bob.pk)[1] == 0


def test_it_reverses_a_rejected_reference_answer_with_the_reviewers_note(
    bob: Any, charlie: Any
) -> None:
    make_item("reference")
    written = _submit(bob, claim(bob, "reference"), {"text": "Lyon."})
    _submit(charlie, claim(charlie, "review"), {"verdict": "reject", "note": "wrong city"})
    entry = XpEntry.objects.get(assignment=written)
    assert (entry.state, entry.resolution) == (XpState.REVERSED, "rejected by review: wrong city")


def test_it_takes_a_double_submission_once(bob: Any) -> None:
    make_item("rank", overlap=1)
    assignment = claim(bob, "rank")
    _submit(bob, assignment, answer_for("rank"))
    again = _submit(bob, assignment, answer_for("rank", first="b"))
    assert again.answer == {"all_bad": False, "order": ["a", "b"]}
    assert XpEntry.objects.filter(user=bob).exclude(key__startswith="goal").count() == 1


def test_it_refuses_a_submission_after_the_lease_and_frees_the_slot(bob: Any, charlie: Any) -> None:
    make_item("rank", overlap=1)
    assignment = claim(bob, "rank")
    Assignment.objects.filter(id=assignment.id).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(services.LeaseExpired):
        _submit(bob, assignment, answer_for("rank"))
    assert not XpEntry.objects.filter(user=bob).exists()
    assert claim(charlie, "rank").item_id == assignment.item_id


def test_it_refuses_someone_elses_assignment(bob: Any, charlie: Any) -> None:
    make_item("rank")
    with pytest.raises(services.NotFound):
        _submit(charlie, claim(bob, "rank"), answer_for("rank"))


def test_it_refuses_a_ranking_that_gives_two_replies_one_place(bob: Any) -> None:
    make_item("rank")
    with pytest.raises(services.QuestError):
        _submit(bob, claim(bob, "rank"), {"rank_a": "1", "rank_b": "1"})


def test_it_keeps_a_draft_per_user_and_item_and_drops_it_on_submit(bob: Any) -> None:
    item = make_item("reference")
    assignment = claim(bob, "reference")
    services.draft_save(user_id=bob.pk, item_id=item.id, text="Par")
    services.draft_save(user_id=bob.pk, item_id=item.id, text="Paris is")
    assert selectors.draft_text(user_id=bob.pk, item_id=item.id) == "Paris is"
    _submit(bob, assignment, {"text": "Paris is the capital."})
    assert selectors.draft_text(user_id=bob.pk, item_id=item.id) == ""


def test_it_refuses_a_draft_for_an_item_the_user_never_took(bob: Any) -> None:
    item = make_item("reference")
    with pytest.raises(services.NotFound):
        services.draft_save(user_id=bob.pk, item_id=item.id, text="x")


def test_it_counts_levels_streaks_and_badges_from_the_ledger(bob: Any) -> None:
    for days_ago in (2, 1, 0):
        entry = services.xp_post(
            user_id=bob.pk, amount=12, reason="test", state=XpState.SETTLED, key=f"t{days_ago}"
        )
        assert entry is not None
        XpEntry.objects.filter(id=entry.id).update(
            created_at=timezone.now() - timedelta(days=days_ago)
        )
    profile = selectors.contributor_profile(user_id=bob.pk)
    assert (profile.settled, profile.level, profile.streak) == (36, 3, 3)
    assert {b.key for b in profile.badges} == {"streak-3", "level-3"}


def test_it_pays_a_daily_goal_once(bob: Any) -> None:
    for _ in range(5):
        make_item("rank", overlap=1)
    for _ in range(5):
        _submit(bob, claim(bob, "rank"), answer_for("rank"))
    assert services.goals_settle(user_id=bob.pk) == []
    goal = XpEntry.objects.get(user=bob, key__startswith="goal:quests")
    assert (goal.amount, goal.state) == (5, XpState.SETTLED)


def test_it_counts_arena_votes_toward_the_voting_goal(bob: Any) -> None:
    model_a, model_b = ModelFactory.create(), ModelFactory.create()
    for _ in range(3):
        vote = make_vote(model_a, model_b, "a")
        vote.user = bob
        vote.save(update_fields=["user"])
    progress = dict((g.key, p) for g, p in selectors.goals_progress(user_id=bob.pk))
    assert progress["votes"] == 3


def test_it_spawns_a_reference_quest_and_labels_from_a_both_bad_vote(bob: Any) -> None:
    vote = make_vote(ModelFactory.create(), ModelFactory.create(), "bothbad", prompt="Name a prime")
    vote.battle.user = bob
    vote.battle.save(update_fields=["user"])
    quests_from_vote(vote.id)
    quests_from_vote(vote.id)  # a redelivered task spawns nothing more
    items = QuestItem.objects.order_by("type", "source")
    assert [(i.type, i.prompt, i.author_id) for i in items] == [
        ("label", "Name a prime", bob.pk),
        ("label", "Name a prime", bob.pk),
        ("reference", "Name a prime", bob.pk),
    ]
    assert services.assignment_claim(user_id=bob.pk, quest_type="reference") is None


def test_it_spawns_a_ranking_quest_when_a_battles_votes_disagree() -> None:
    first = make_vote(ModelFactory.create(), ModelFactory.create(), "a")
    quests_from_vote(first.id)
    assert not QuestItem.objects.exists()
    battle = first.battle
    assert battle.model_b is not None
    now = timezone.now()
    gens = [
        Generation.objects.create(
            model=m, messages=[], status=GenerationStatus.DONE, text=t, finished_at=now
        )
        for m, t in ((battle.model_a, "x"), (battle.model_b, "y"))
    ]
    turn = battle.turns.create(
        index=2, prompt="and now?", generation_a=gens[0], generation_b=gens[1]
    )
    second = battle.votes.create(turn=turn, choice="b", session_key="s-board", anony=True)
    quests_from_vote(second.id)
    item = QuestItem.objects.get()
    assert (item.type, item.prompt, [r["text"] for r in item.replies]) == (
        "rank",
        "and now?",
        ["x", "y"],
    )


@pytest.mark.django_db(transaction=True)
def test_it_hears_a_both_bad_vote_cast_in_the_arena(celery_worker: str) -> None:
    vote = make_vote(ModelFactory.create(), ModelFactory.create(), "a", prompt="Say hi")
    turn, battle = vote.turn, vote.battle
    vote.delete()
    vote_cast(
        battle_id=battle.id, turn_id=turn.id, requester=Requester(None, "s-board"),
        choice="bothbad",
    )  # fmt: skip
    item = wait_for(lambda: QuestItem.objects.filter(type="reference").first(), timeout=20)
    assert item.prompt == "Say hi"


def test_it_pays_the_voting_goal_when_the_tenth_vote_arrives(bob: Any) -> None:
    model_a, model_b = ModelFactory.create(), ModelFactory.create()
    votes = [make_vote(model_a, model_b, "a") for _ in range(10)]
    for k, vote in enumerate(votes):
        vote.user = bob
        vote.save(update_fields=["user"])
        quests_from_vote(vote.id)
        paid = XpEntry.objects.filter(user=bob, key__startswith="goal:votes").count()
        assert paid == (1 if k == 9 else 0)


def test_only_a_vote_that_can_spawn_quests_costs_a_task(monkeypatch: Any) -> None:
    """The arena's hand-off, through its signal: a first turn's verdict spawns nothing, so it
    publishes no task; "both bad", a tie and a later turn's verdict each publish one."""
    from arena import signals
    from collection import tasks

    published: list[int] = []
    monkeypatch.setattr(tasks.quests_from_vote, "delay", published.append)
    for vote_id, choice, turn_index in (
        (1, "a", 1), (2, "b", 1), (3, "bothbad", 1), (4, "tie", 1), (5, "a", 2),
    ):  # fmt: skip
        signals.vote_cast.send(
            sender=None, vote_id=vote_id, battle_id=None, choice=choice, user_id=None,
            turn_index=turn_index,
        )  # fmt: skip
    assert published == [3, 4, 5]
