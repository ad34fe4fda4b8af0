"""Contributor reliabilities: estimated from gold items and agreement, stored, and applied to the
XP ledger. The math is collection.quality's (Crowd-BT for rankings, Dawid-Skene for labels,
Krippendorff's alpha); this module reads the answers, calls it and writes the results.

A ranking answer is a set of pairwise judgements (each reply placed above another). Within an
item, a reply's strength is the log of its pairwise wins (plus a half), so the chance that the
crowd prefers ``w`` to ``l`` is ``(wins_w + 0.5) / (wins_w + wins_l + 1)``: the Bradley-Terry fit
of one item's comparisons, smoothed. Crowd-BT's EM then gives each contributor the chance ``eta``
that they agree with the crowd's preference, gold answers counting as certain (dis)agreement.

A label answer is a yes/no per label, for the labels anyone gave the item (the labels nobody gave
would reward whoever gives none), and its rating's bucket (low, mid, high); Dawid-Skene fits a
confusion matrix per contributor on those, with gold items' known answers clamped, and its
expected accuracy is the reliability.

Arena votes: each account's counted votes of the last week against the board's Bradley-Terry
model (Crowd-BT again, the strengths fitted on all the period's votes).

A contributor's reliability is the mean of the three, weighted by how many answers (decisive
votes) of each kind they gave.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from arena.leaderboard import selectors as leaderboard_selectors
from arena.ratings import counts_from_battles, fit_bt, load_battles
from arena.ratings.battles import A_WINS, B_WINS, Battles
from arena.ratings.bt import DEFAULT_PRIOR
from collection import services
from collection.models import (
    Assignment,
    AssignmentState,
    GoldCopy,
    QuestType,
    Reliability,
    XpEntry,
    XpHold,
    XpState,
)
from collection.quality import dawid_skene, krippendorff_alpha
from collection.quality import reliability as crowd_bt

# The most recent answers read per refresh, and the period of counted arena votes: a bounded
# cost at any history.
RECENT_ANSWERS = 50_000
VOTE_WINDOW = timedelta(days=7)
PAIRWISE = (QuestType.RANK, QuestType.IMAGE)


@dataclass
class Answers:
    """The answers a refresh reads: (assignment, user, item, type, answer) and each gold copy's
    (user, item, type, expected answer, right)."""

    rows: list[tuple[int, int, int, str, dict[str, Any]]]
    gold: list[tuple[int, int, str, dict[str, Any], bool]] = field(default_factory=list)


def answers_read(*, recent: int = RECENT_ANSWERS) -> Answers:
    submitted = (
        Assignment.objects.filter(
            state=AssignmentState.SUBMITTED, item__type__in=[*PAIRWISE, QuestType.LABEL]
        )
        .order_by("-id")
        .values_list("id", "user_id", "item_id", "item__type", "answer")[:recent]
    )
    checked = (
        GoldCopy.objects.filter(right__isnull=False)
        .order_by("-id")
        .values_list("user_id", "item_id", "gold__type", "answer", "right")[:recent]
    )
    return Answers(
        rows=[(a, u, i, t, answer or {}) for a, u, i, t, answer in submitted],
        gold=[(u, i, t, expected or {}, bool(right)) for u, i, t, expected, right in checked],
    )


@dataclass(frozen=True)
class Estimate:
    value: float
    gold_answered: int
    gold_right: int
    rankings: int
    labels: int
    alpha: float | None
    votes: int = 0


def _pairwise(answers: Answers) -> tuple[dict[int, float], dict[int, int]]:
    """Crowd-BT agreement per contributor from ranking answers and ranking gold."""
    gold_items = {item for _u, item, _t, _e, _r in answers.gold}
    judgements: list[tuple[int, str, str]] = []  # (user, winner, loser) as "item:key"
    counted: dict[int, int] = defaultdict(int)
    for _id, user, item, kind, answer in answers.rows:
        if kind not in PAIRWISE or item in gold_items or answer.get("all_bad"):
            continue
        order = answer.get("order") or []
        counted[user] += 1
        for i, winner in enumerate(order):
            for loser in order[i + 1 :]:
                judgements.append((user, f"{item}:{winner}", f"{item}:{loser}"))
    gold_answered: dict[int, int] = defaultdict(int)
    gold_right: dict[int, int] = defaultdict(int)
    for user, _item, kind, _expected, right in answers.gold:
        if kind in PAIRWISE:
            gold_answered[user] += 1
            gold_right[user] += int(right)
            counted[user] += 1
    judges = sorted(counted)
    if not judges:
        return {}, {}
    judge_index = {u: k for k, u in enumerate(judges)}
    models = sorted({m for _u, w, lo in judgements for m in (w, lo)})
    model_index = {m: k for k, m in enumerate(models)}
    wins: dict[str, int] = defaultdict(int)
    for _u, winner, _loser in judgements:
        wins[winner] += 1
    theta = np.array([math.log(wins[m] + 0.5) for m in models], dtype=np.float64)
    battles = Battles(
        models=tuple(models),
        a=np.array([model_index[w] for _u, w, _l in judgements], dtype=np.int64),
        b=np.array([model_index[lo] for _u, _w, lo in judgements], dtype=np.int64),
        outcome=np.full(len(judgements), A_WINS, dtype=np.int8),
    )
    judge = np.array([judge_index[u] for u, _w, _l in judgements], dtype=np.int64)
    eta = crowd_bt(
        battles,
        theta,
        judge,
        len(judges),
        np.array([gold_answered[u] for u in judges], dtype=np.float64),
        np.array([gold_right[u] for u in judges], dtype=np.float64),
    )
    return {u: float(eta[k]) for u, k in judge_index.items()}, dict(counted)


def _rating_bucket(rating: Any) -> str:
    value = int(rating or 0)
    return "low" if value <= 2 else "mid" if value == 3 else "high"


def _labels(answers: Answers) -> tuple[dict[int, float], dict[int, int]]:
    """Dawid-Skene accuracy per contributor on label answers: a yes or no per label anyone gave
    the item, and the rating's bucket (low 1-2, mid 3, high 4-5); gold answers clamped."""
    given: dict[int, list[tuple[int, set[str], str]]] = defaultdict(list)
    for _id, user, item, kind, answer in answers.rows:
        if kind == QuestType.LABEL:
            labels = set(answer.get("labels", []))
            given[item].append((user, labels, _rating_bucket(answer.get("rating"))))
    expected = {item: exp for _u, item, kind, exp, _r in answers.gold if kind == QuestType.LABEL}
    items: list[str] = []
    who: list[int] = []
    values: list[str] = []
    gold: dict[str, str] = {}
    counted: dict[int, int] = defaultdict(int)
    for item, answered in given.items():
        known = expected.get(item)
        asked = set().union(*(labels for _u, labels, _r in answered))
        asked |= set(known.get("labels", [])) if known else set()
        for user, labels, bucket in answered:
            counted[user] += 1
            for label in sorted(asked):
                items.append(f"{item}:{label}")
                who.append(user)
                values.append("yes" if label in labels else "no")
            items.append(f"{item}:rating")
            who.append(user)
            values.append(bucket)
        if known:
            for label in asked:
                gold[f"{item}:{label}"] = "yes" if label in known.get("labels", []) else "no"
            if known.get("rating") is not None:
                gold[f"{item}:rating"] = _rating_bucket(known["rating"])
    if not items:
        return {}, {}
    fit = dawid_skene(items, who, values, gold=gold)
    accuracy = dict(zip(fit.contributors, fit.reliability.tolist(), strict=True))
    return {user: float(accuracy[user]) for user in counted}, dict(counted)


def _item_value(kind: str, answer: dict[str, Any]) -> str:
    """An answer as one nominal value for Krippendorff's alpha (namespaced by kind)."""
    if kind == QuestType.LABEL:
        return f"rating:{answer.get('rating')}"
    if answer.get("all_bad"):
        return "all_bad"
    order = answer.get("order") or [""]
    return f"first:{order[0]}"


def _alpha_per_user(answers: Answers) -> dict[int, float | None]:
    """Krippendorff's alpha (nominal) over the items each contributor answered, everyone's
    answers on them included."""
    per_item: dict[int, list[str]] = defaultdict(list)
    items_of: dict[int, set[int]] = defaultdict(set)
    for _id, user, item, kind, answer in answers.rows:
        per_item[item].append(_item_value(kind, answer))
        items_of[user].add(item)
    out: dict[int, float | None] = {}
    for user, items in items_of.items():
        shared = [i for i in items if len(per_item[i]) >= 2]
        if not shared:
            out[user] = None
            continue
        names = [i for i in shared for _v in per_item[i]]
        values = [v for i in shared for v in per_item[i]]
        alpha = krippendorff_alpha(names, values)
        out[user] = None if math.isnan(alpha) else alpha
    return out


@dataclass(frozen=True)
class VoteAgreement:
    """Crowd-BT agreement of each account's counted arena votes with the board's model."""

    eta: dict[int, float] = field(default_factory=dict)
    votes: dict[int, int] = field(default_factory=dict)


def vote_agreement(*, window: timedelta = VOTE_WINDOW) -> VoteAgreement:
    """The counted votes of the period (read through the leaderboard's selectors, as the anomaly
    scan reads them): Bradley-Terry strengths fitted on all of them, then each voter's chance of
    agreeing with them (collection.quality's Crowd-BT EM). Accounts only: a browser session is
    nobody's contributor profile."""
    found = leaderboard_selectors.votes_for_review(since=timezone.now() - window)
    if not found.rows:
        return VoteAgreement()
    battles = load_battles(found.rows, judges=True)
    assert battles.judge is not None
    voted = battles.select(battles.judge >= 0)
    assert voted.judge is not None
    theta = fit_bt(counts_from_battles(battles), prior=DEFAULT_PRIOR).theta
    count = len(battles.judges)
    eta = crowd_bt(voted, theta, voted.judge, count)
    decisive = np.bincount(voted.judge[voted.outcome <= B_WINS], minlength=count)
    out = VoteAgreement()
    for k, judge in enumerate(battles.judges):
        user_id, _session = found.voters.get(judge, (None, ""))
        if user_id is not None and decisive[k] > 0:
            out.eta[user_id] = float(eta[k])
            out.votes[user_id] = int(decisive[k])
    return out


def estimates(answers: Answers, votes: VoteAgreement | None = None) -> dict[int, Estimate]:
    """One estimate per contributor who answered a ranking, label or gold item, or cast a
    decisive arena vote: the mean of their ranking, label and vote reliabilities, weighted by
    how many of each they gave."""
    votes = votes or VoteAgreement()
    pair, pair_n = _pairwise(answers)
    label, label_n = _labels(answers)
    alpha = _alpha_per_user(answers)
    gold_answered: dict[int, int] = defaultdict(int)
    gold_right: dict[int, int] = defaultdict(int)
    for user, _item, _kind, _expected, right in answers.gold:
        gold_answered[user] += 1
        gold_right[user] += int(right)
    out = {}
    for user in set(pair) | set(label) | set(votes.eta):
        n_pair, n_label = pair_n.get(user, 0), label_n.get(user, 0)
        n_votes = votes.votes.get(user, 0)
        value = (
            pair.get(user, 0.0) * n_pair
            + label.get(user, 0.0) * n_label
            + votes.eta.get(user, 0.0) * n_votes
        ) / (n_pair + n_label + n_votes)
        out[user] = Estimate(
            value=value, gold_answered=gold_answered[user], gold_right=gold_right[user],
            rankings=n_pair, labels=n_label, alpha=alpha.get(user), votes=n_votes,
        )  # fmt: skip
    return out


def _gold_resolve(user_ids: Iterable[int] | None = None) -> int:
    """Settle (right) or reverse (wrong) the XP of answered gold copies, with the reason."""
    copies = GoldCopy.objects.filter(right__isnull=False, resolved=False)
    if user_ids is not None:
        copies = copies.filter(user_id__in=list(user_ids))
    done = 0
    for copy in copies.select_related("item"):
        assignment = Assignment.objects.filter(item_id=copy.item_id, user_id=copy.user_id).first()
        if assignment is not None:
            outcome = "checked against a known answer: " + ("right" if copy.right else "wrong")
            assignment.outcome = outcome
            assignment.save(update_fields=["outcome"])
            services.xp_resolve(
                assignment_id=assignment.id, settle=bool(copy.right), resolution=outcome
            )
        copy.resolved = True
        copy.save(update_fields=["resolved"])
        done += 1
    return done


def _holds_release() -> int:
    """Settle held XP whose owner's reliability now clears the bar."""
    released = 0
    holds = XpHold.objects.filter(
        user__reliability__value__gte=settings.QUEST_RELIABILITY_MIN
    ).select_related("entry")
    for hold in holds:
        released += XpEntry.objects.filter(id=hold.entry_id, state=XpState.PENDING).update(
            state=XpState.SETTLED, resolution=hold.resolution, resolved_at=timezone.now()
        )
        hold.delete()
    # Entries resolved another way since (reversed) need no hold.
    XpHold.objects.exclude(entry__state=XpState.PENDING).delete()
    return released


@dataclass(frozen=True)
class Refresh:
    contributors: int
    gold_resolved: int
    released: int


def reliabilities_refresh(*, recent: int = RECENT_ANSWERS) -> Refresh:
    """Re-estimate every contributor's reliability from their recent answers, store it, then
    resolve answered gold items' XP and release held XP that now clears the bar."""
    found = estimates(answers_read(recent=recent), vote_agreement())
    rows = [
        Reliability(
            user_id=user,
            value=est.value,
            gold_answered=est.gold_answered,
            gold_right=est.gold_right,
            rankings=est.rankings,
            labels=est.labels,
            votes=est.votes,
            alpha=est.alpha,
        )
        for user, est in found.items()
    ]
    fields = [
        "value", "gold_answered", "gold_right", "rankings", "labels", "votes", "alpha",
        "updated_at",
    ]  # fmt: skip
    with transaction.atomic():
        Reliability.objects.bulk_create(
            rows, batch_size=1000, update_conflicts=True, unique_fields=["user"],
            update_fields=fields,
        )  # fmt: skip
        gold = _gold_resolve()
        released = _holds_release()
    return Refresh(contributors=len(found), gold_resolved=gold, released=released)
