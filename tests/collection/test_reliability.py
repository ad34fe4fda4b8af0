"""Contributor reliabilities: estimated by the periodic refresh from gold and agreement, used to
weight consensus and XP, with low-reliability XP held; agreement shown to staff."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from scipy import stats

from collection import reliabilities, services, tasks
from collection.models import (
    GoldCopy,
    Reliability,
    XpEntry,
    XpHold,
    XpState,
)
from tests.collection.helpers import answer_for, claim, make_item
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _answer_gold(user: Any, *, right: bool, times: int) -> None:
    """The user's onboarding: `times` ranking gold items, answered right or wrong."""
    for _ in range(times):
        assignment = claim(user, "rank")
        copy = GoldCopy.objects.get(item_id=assignment.item_id)
        top = copy.answer["top"]
        keys = [r["key"] for r in assignment.item.replies]
        first = top if right else next(k for k in keys if k != top)
        rest = [k for k in keys if k != first]
        data = {f"rank_{first}": "1", **{f"rank_{k}": str(n) for n, k in enumerate(rest, 2)}}
        services.assignment_submit(user_id=user.pk, assignment_id=assignment.id, data=data)


def test_it_weights_consensus_and_xp_by_reliability_and_holds_unreliable_xp(
    settings: Any,
) -> None:
    settings.QUEST_ONBOARDING_GOLD, settings.QUEST_GOLD_RATE = 3, 0.0
    call_command("seed_gold_items")
    careless = [UserFactory.create(username=f"careless{k}") for k in range(2)]
    careful = UserFactory.create(username="careful")
    for user in careless:
        _answer_gold(user, right=False, times=3)
    _answer_gold(careful, right=True, times=3)
    tasks.refresh_reliabilities()
    value = dict(Reliability.objects.values_list("user__username", "value"))
    assert value["careful"] > 0.8 > 0.4 > value["careless0"]

    # Two careless contributors put B first, one careful one A: the careful one wins.
    item = make_item("rank")
    for user, first in ((careless[0], "b"), (careless[1], "b"), (careful, "a")):
        assignment = claim(user, "rank")
        assert assignment.item_id == item.id
        services.assignment_submit(
            user_id=user.pk, assignment_id=assignment.id, data=answer_for("rank", first=first)
        )
    item.refresh_from_db()
    assert item.consensus is not None and item.consensus["top"] == "a"
    entry = {
        e.user.username: e for e in XpEntry.objects.filter(assignment__item=item).select_related()
    }
    assert entry["careful"].state == XpState.SETTLED
    assert entry["careless0"].state == XpState.REVERSED
    # XP is scaled by reliability: a coin-like contributor's answers earn none.
    assert entry["careful"].amount > 0 and entry["careless0"].amount == 0

    # A careless contributor who agrees with the crowd: the XP is held, not settled.
    item = make_item("rank")
    for user in (careless[0], careful, UserFactory.create(username="newcomer")):
        settings.QUEST_ONBOARDING_GOLD = 0
        assignment = claim(user, "rank")
        services.assignment_submit(
            user_id=user.pk, assignment_id=assignment.id, data=answer_for("rank", first="a")
        )
    held = XpEntry.objects.get(assignment__item=item, user=careless[0])
    assert held.state == XpState.PENDING and held.resolution == services.XP_HELD
    assert XpHold.objects.filter(entry=held).exists()
    assert XpEntry.objects.get(assignment__item=item, user=careful).state == XpState.SETTLED

    # Once the bar is below the contributor's reliability, the next refresh settles it.
    settings.QUEST_RELIABILITY_MIN = 0.2
    tasks.refresh_reliabilities()
    held.refresh_from_db()
    assert held.state == XpState.SETTLED and held.resolution == "agreed with consensus"
    assert not XpHold.objects.exists()


def _simulated_rank_answers(
    rng: np.random.Generator, accuracy: dict[int, float], items: int, coordinated: set[int]
) -> reliabilities.Answers:
    """Each contributor ranks every item of two replies; the right reply is "a". Honest and
    careless contributors are right with their accuracy, spammers at random, and a coordinated
    group always puts "b" first."""
    rows: list[tuple[int, int, int, str, dict[str, Any]]] = []
    for item in range(items):
        for user, acc in accuracy.items():
            right = user not in coordinated and rng.random() < acc
            rows.append(
                (len(rows), user, item, "rank", {"order": ["a", "b"] if right else ["b", "a"]})
            )
    return reliabilities.Answers(rows=rows)


def test_it_ranks_simulated_contributors_by_their_accuracy_from_agreement_alone() -> None:
    rng = np.random.default_rng(5)
    accuracy = {
        **{u: rng.uniform(0.85, 1.0) for u in range(0, 12)},  # honest
        **{u: rng.uniform(0.6, 0.8) for u in range(12, 18)},  # careless
        **{u: 0.5 for u in range(18, 22)},  # spammers
        **{u: 0.0 for u in range(22, 25)},  # a coordinated group, always against the truth
    }
    coordinated = set(range(22, 25))
    found = reliabilities.estimates(_simulated_rank_answers(rng, accuracy, 120, coordinated))
    users = sorted(accuracy)
    estimated = [found[u].value for u in users]
    assert stats.spearmanr(estimated, [accuracy[u] for u in users]).statistic >= 0.8
    assert max(found[u].value for u in coordinated) < 0.5  # flagged: below a coin


def test_it_shows_agreement_per_quest_type_and_contributor_to_staff_only(
    alice: Any, bob: Any, charlie: Any, settings: Any
) -> None:
    settings.QUEST_ONBOARDING_GOLD = 0
    ratings = {make_item("label").id: "4", make_item("label").id: "2"}
    for user in (bob, charlie):
        for _ in ratings:
            assignment = claim(user, "label")
            data = {"labels": [], "rating": ratings[assignment.item_id]}
            services.assignment_submit(user_id=user.pk, assignment_id=assignment.id, data=data)
    tasks.refresh_reliabilities()
    assert _client(bob).get("/quests/quality/").status_code == 302
    body = _client(alice).get("/quests/quality/").content.decode()
    assert re.search(r'data-quest-type="label">.*?data-testid="alpha">1\.000<', body, re.S)
    assert 'data-username="bob"' in body and 'data-username="charlie"' in body


def test_it_counts_arena_votes_against_the_boards_model_in_the_reliability() -> None:
    from arena.models import Vote
    from tests.factories import ModelFactory
    from tests.leaderboard.votes import make_vote

    strong, middle, weak = (ModelFactory.create() for _ in range(3))
    honest = [UserFactory.create(username=f"voter{k}") for k in range(3)]
    contrarian = UserFactory.create(username="contrarian")
    pairs = [(strong, middle), (middle, weak), (strong, weak)]
    rng = np.random.default_rng(0)
    for user in [*honest, contrarian]:
        for k in range(30):
            better, worse = pairs[k % 3]
            a, b = (better, worse) if k % 2 else (worse, better)
            right = user != contrarian and rng.random() < 0.9
            wins = better if right else worse
            vote = make_vote(a, b, "a" if wins == a else "b")
            Vote.objects.filter(id=vote.id).update(user=user, session_key="")
    tasks.refresh_reliabilities()
    stored = {r.user.username: r for r in Reliability.objects.select_related("user")}
    assert stored["contrarian"].votes == 30 and stored["contrarian"].value < 0.4
    assert min(stored[u.username].value for u in honest) > 0.7
