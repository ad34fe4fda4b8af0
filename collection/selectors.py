"""Reads of the collection app: the router's helpers, the game's figures, boards and profiles."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone

from arena import ratelimit
from arena import selectors as arena_selectors
from arena.ratings.counts import reliability_weight
from collection import rules
from collection.models import (
    Assignment,
    AssignmentState,
    Contributor,
    Draft,
    ItemStatus,
    QuestFocus,
    QuestItem,
    QuestType,
    Reliability,
    XpEntry,
    XpHold,
    XpState,
)
from collection.quality import krippendorff_alpha

BACKLOG_CACHE_KEY = "collection:backlog"
BACKLOG_CACHE_SECONDS = 10


# Bounties stop growing at this backlog (rules.bounty), so counting further buys nothing.
BACKLOG_COUNT_CAP = 1000


def quest_backlog() -> dict[str, int]:
    """Open items per type, counted up to BACKLOG_COUNT_CAP (+1, to say "more"): a bounded walk of
    the router's partial index per type, cheap at any backlog; cached a few seconds."""
    backlog = cache.get(BACKLOG_CACHE_KEY)
    if backlog is None:
        table = QuestItem._meta.db_table
        sql = f"""
            SELECT t.type, (SELECT count(*) FROM (
                SELECT 1 FROM {table} i WHERE i.status = %(open)s AND i.type = t.type
                LIMIT %(cap)s) s)
            FROM unnest(%(types)s::text[]) AS t(type)"""
        params: dict[str, Any] = {
            "open": ItemStatus.OPEN,
            "cap": BACKLOG_COUNT_CAP + 1,
            "types": QuestType.values,
        }
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            backlog = dict(cursor.fetchall())
        cache.set(BACKLOG_CACHE_KEY, backlog, BACKLOG_CACHE_SECONDS)
    return backlog


def quest_bounties_ranked() -> list[tuple[str, int]]:
    """(type, XP per answer) for the types with open work, highest bounty first."""
    backlog = quest_backlog()
    bounties = [(t, rules.bounty(t, n)) for t, n in backlog.items() if n > 0]
    return sorted(bounties, key=lambda tb: -tb[1])


@dataclass(frozen=True)
class QuestCard:
    type: str
    title: str
    backlog: int
    bounty: int
    focus: str = ""


# The tool-use quests' titles: a tools battle's ranking and its label of one reply's calls.
TOOL_QUEST_TITLES = {
    QuestType.RANK: "Which answer used its tools better?",
    QuestType.LABEL: "Was this call right?",
}


def quest_focus_backlog(focus: str) -> dict[str, int]:
    """Open items of one focus per type, counted up to BACKLOG_COUNT_CAP (+1): a walk of the
    focused router index, which holds only focused open items."""
    table = QuestItem._meta.db_table
    sql = f"""
        SELECT t.type, (SELECT count(*) FROM (
            SELECT 1 FROM {table} i
            WHERE i.status = %(open)s AND i.type = t.type AND i.focus = %(focus)s
            LIMIT %(cap)s) s)
        FROM unnest(%(types)s::text[]) AS t(type)"""
    params: dict[str, Any] = {
        "open": ItemStatus.OPEN,
        "focus": focus,
        "cap": BACKLOG_COUNT_CAP + 1,
        "types": list(TOOL_QUEST_TITLES),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {t: n for t, n in cursor.fetchall() if n > 0}


def quest_cards() -> list[QuestCard]:
    """One card per quest type with open work, in the router's order of need, then one per
    tool-use quest with open work (its items are also part of its type's card)."""
    backlog = quest_backlog()
    cards = [
        QuestCard(type=t, title=QuestType(t).label, backlog=backlog[t], bounty=b)
        for t, b in quest_bounties_ranked()
    ]
    for t, n in quest_focus_backlog(QuestFocus.TOOLS).items():
        cards.append(
            QuestCard(
                type=t, title=TOOL_QUEST_TITLES[QuestType(t)], backlog=n,
                bounty=rules.bounty(t, backlog.get(t, n)), focus=QuestFocus.TOOLS,
            )
        )  # fmt: skip
    return cards


def assignment_of(*, user_id: int, assignment_id: int) -> Assignment | None:
    return (
        Assignment.objects.select_related("item", "item__reviewed")
        .filter(id=assignment_id, user_id=user_id)
        .first()
    )


def draft_text(*, user_id: int, item_id: int) -> str:
    draft = Draft.objects.filter(user_id=user_id, item_id=item_id).first()
    return draft.text if draft else ""


def reliability_of(*, user_id: int) -> float | None:
    """The contributor's stored reliability (collection.reliabilities), None before the first
    estimate."""
    return Reliability.objects.filter(user_id=user_id).values_list("value", flat=True).first()


def contributor_reliability(*, user_id: int) -> float:
    """The share of the base XP this contributor's answers earn (rules.xp_factor of their
    reliability); 1.0 before the first estimate."""
    value = reliability_of(user_id=user_id)
    return 1.0 if value is None else rules.xp_factor(value)


def consensus_weights(*, user_ids: list[int]) -> dict[int, float]:
    """Each contributor's weight in an item's consensus: 2 * reliability - 1 clipped to [0, 1]
    (arena.ratings.counts.reliability_weight: a coin counts for nothing), 1.0 before the first
    estimate."""
    stored = dict(Reliability.objects.filter(user_id__in=user_ids).values_list("user_id", "value"))
    return {uid: reliability_weight(stored[uid]) if uid in stored else 1.0 for uid in user_ids}


def quests_answered_today(*, user_id: int) -> int:
    return Assignment.objects.filter(
        user_id=user_id, state=AssignmentState.SUBMITTED, submitted_at__gte=_start_of_today()
    ).count()


def quests_left_today(*, user_id: int) -> int | None:
    """Quest answers the user may still submit today; None without a budget."""
    budget = settings.QUEST_ANSWERS_PER_DAY
    if budget <= 0:
        return None
    return max(budget - quests_answered_today(user_id=user_id), 0)


@dataclass(frozen=True)
class Budgets:
    """What the user may still do today (None: no budget), for the quest page and the profile."""

    quests_left: int | None
    quests_budget: int
    votes_left: int | None
    votes_budget: int


def budgets_today(*, user_id: int) -> Budgets:
    return Budgets(
        quests_left=quests_left_today(user_id=user_id),
        quests_budget=settings.QUEST_ANSWERS_PER_DAY,
        votes_left=ratelimit.votes_left_today(
            arena_selectors.Requester(user_id, "").ident, settings.ARENA_VOTES_PER_DAY
        ),
        votes_budget=settings.ARENA_VOTES_PER_DAY,
    )


def xp_totals(*, user_id: int) -> tuple[int, int]:
    """(settled, pending) XP of the user."""
    sums = XpEntry.objects.filter(user_id=user_id).aggregate(
        settled=Sum("amount", filter=Q(state=XpState.SETTLED)),
        pending=Sum("amount", filter=Q(state=XpState.PENDING)),
    )
    return sums["settled"] or 0, sums["pending"] or 0


def streak_days(*, user_id: int, today: date | None = None) -> int:
    """Days in a row, ending today (or yesterday, before today's first contribution), with at
    least one ledger entry."""
    today = today or timezone.localdate()
    since = timezone.now() - timedelta(days=400)
    days = {
        timezone.localdate(created)
        for created in XpEntry.objects.filter(user_id=user_id, created_at__gte=since).values_list(
            "created_at", flat=True
        )
    }
    day = today if today in days else today - timedelta(days=1)
    streak = 0
    while day in days:
        streak += 1
        day -= timedelta(days=1)
    return streak


def _start_of_today() -> datetime:
    now = timezone.localtime()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def goals_progress(*, user_id: int) -> list[tuple[rules.Goal, int]]:
    """Each daily goal with the user's progress today (arena votes read through the arena)."""
    start = _start_of_today()
    submitted = Assignment.objects.filter(
        user_id=user_id, state=AssignmentState.SUBMITTED, submitted_at__gte=start
    )
    progress = {
        "votes": arena_selectors.user_votes_since(user_id=user_id, since=start),
        "quests": submitted.count(),
        "reference": submitted.filter(item__type=QuestType.REFERENCE).count(),
    }
    return [(goal, progress[goal.key]) for goal in rules.DAILY_GOALS]


@dataclass
class Profile:
    settled: int
    pending: int
    level: int
    next_level_at: int | None
    streak: int
    badges: list[rules.Badge]
    goals: list[tuple[rules.Goal, int]]
    contributions: list[Assignment] = field(default_factory=list)
    ledger: list[XpEntry] = field(default_factory=list)
    opted_out: bool = False


def contributor_profile(*, user_id: int) -> Profile:
    """Everything /me/ shows: XP, level, streak, badges, goals, and each contribution with what
    became of it and the XP it earned."""
    settled, pending = xp_totals(user_id=user_id)
    streak = streak_days(user_id=user_id)
    contributions = list(
        Assignment.objects.filter(user_id=user_id, state=AssignmentState.SUBMITTED)
        .select_related("item")
        .prefetch_related("xp")
        .order_by("-submitted_at")[:200]
    )
    counts = Counter(a.item.type for a in contributions)
    accepted = sum(1 for a in contributions if a.outcome == "accepted by review")
    badges = rules.badges_earned(
        submitted=len(contributions), accepted=accepted, reviews=counts[QuestType.REVIEW],
        streak=streak, xp=settled,
    )  # fmt: skip
    return Profile(
        settled=settled, pending=pending, level=rules.level_for(settled),
        next_level_at=rules.next_level_at(settled), streak=streak, badges=badges,
        goals=goals_progress(user_id=user_id), contributions=contributions,
        ledger=list(XpEntry.objects.filter(user_id=user_id).order_by("-id")[:50]),
        opted_out=Contributor.objects.filter(user_id=user_id, leaderboard_opt_out=True).exists(),
    )  # fmt: skip


PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7), "all": None}


@dataclass(frozen=True)
class BoardRow:
    rank: int
    username: str
    xp: int
    is_me: bool


def contributor_board(
    *,
    period: str = "week",
    quest_type: str = "",
    user_id: int | None = None,
    top: int = 10,
    near: int = 2,
) -> tuple[list[BoardRow], list[BoardRow]]:
    """(top rows, the "near me" window: the user's row with `near` rows either side) of settled XP
    in the period (day, week, all time), for one quest type or all; opted-out users are left out
    of both (and see no window)."""
    since = PERIODS[period]
    clauses = ["x.state = %(settled)s"]
    params: dict[str, Any] = {"settled": XpState.SETTLED, "me": user_id or 0}
    if since is not None:
        clauses.append("x.created_at >= %(since)s")
        params["since"] = timezone.now() - since
    if quest_type:
        clauses.append("x.quest_type = %(type)s")
        params["type"] = quest_type
    xp, contributor = XpEntry._meta.db_table, Contributor._meta.db_table
    users = get_user_model()._meta.db_table
    sql = f"""
        WITH totals AS (
            SELECT x.user_id, SUM(x.amount) AS xp FROM {xp} x
            WHERE {" AND ".join(clauses)}
              AND NOT EXISTS (SELECT 1 FROM {contributor} c
                              WHERE c.user_id = x.user_id AND c.leaderboard_opt_out)
            GROUP BY x.user_id HAVING SUM(x.amount) > 0
        ), ranked AS (
            SELECT user_id, xp, RANK() OVER (ORDER BY xp DESC) AS rank,
                   ROW_NUMBER() OVER (ORDER BY xp DESC, user_id) AS rn
            FROM totals
        ), mine AS (SELECT rn FROM ranked WHERE user_id = %(me)s)
        SELECT r.rank, u.username, r.xp, r.user_id = %(me)s, r.rn <= %(top)s,
               r.rn BETWEEN (SELECT rn FROM mine) - %(near)s AND (SELECT rn FROM mine) + %(near)s
        FROM ranked r JOIN {users} u ON u.id = r.user_id
        WHERE r.rn <= %(top)s
           OR r.rn BETWEEN (SELECT rn FROM mine) - %(near)s AND (SELECT rn FROM mine) + %(near)s
        ORDER BY r.rn"""
    with connection.cursor() as cursor:
        cursor.execute(sql, params | {"top": top, "near": near})
        rows = cursor.fetchall()
    top_rows = [BoardRow(r[0], r[1], r[2], r[3]) for r in rows if r[4]]
    near_rows = [BoardRow(r[0], r[1], r[2], r[3]) for r in rows if r[5]]
    return top_rows, near_rows


# -- quality (staff) -------------------------------------------------------------------------------

# Answers per quest type read for the staff page's agreement figures.
AGREEMENT_SAMPLE = 5000


@dataclass(frozen=True)
class TypeAgreement:
    type: str
    title: str
    answers: int
    items: int
    alpha: float | None


@dataclass(frozen=True)
class ContributorQuality:
    username: str
    reliability: float
    gold_answered: int
    gold_right: int
    rankings: int
    labels: int
    votes: int
    alpha: float | None
    held: int
    updated_at: datetime


@dataclass(frozen=True)
class QualityOverview:
    types: list[TypeAgreement]
    contributors: list[ContributorQuality]


def _type_alpha(quest_type: str) -> TypeAgreement:
    """Krippendorff's alpha of the recent answers of one type: the reply ranked first (or "all
    bad") as a nominal value for rankings, the 1-5 rating as an ordinal one for labels."""
    rows = list(
        Assignment.objects.filter(state=AssignmentState.SUBMITTED, item__type=quest_type)
        .order_by("-id")
        .values_list("item_id", "answer")[:AGREEMENT_SAMPLE]
    )
    items: list[int] = []
    values: list[Any] = []
    for item_id, answer in rows:
        answer = answer or {}
        if quest_type == QuestType.LABEL:
            values.append(int(answer.get("rating", 0)))
        elif answer.get("all_bad"):
            values.append("all_bad")
        else:
            values.append((answer.get("order") or [""])[0])
        items.append(item_id)
    alpha = None
    if rows:
        ordinal = quest_type == QuestType.LABEL
        value = krippendorff_alpha(items, values, level="ordinal" if ordinal else "nominal")
        alpha = None if math.isnan(value) else value
    return TypeAgreement(
        type=quest_type, title=QuestType(quest_type).label, answers=len(rows),
        items=len(set(items)), alpha=alpha,
    )  # fmt: skip


def quality_overview(*, limit: int = 500) -> QualityOverview:
    """Agreement per quest type and each contributor's stored reliability, least reliable first
    (where review is most needed), with the XP held for each."""
    held = dict(
        XpHold.objects.values("user_id").annotate(n=Count("id")).values_list("user_id", "n")
    )
    contributors = [
        ContributorQuality(
            username=r.user.get_username(),
            reliability=r.value,
            gold_answered=r.gold_answered,
            gold_right=r.gold_right,
            rankings=r.rankings,
            labels=r.labels,
            votes=r.votes,
            alpha=r.alpha,
            held=held.get(r.user_id, 0),
            updated_at=r.updated_at,
        )
        for r in Reliability.objects.select_related("user").order_by("value", "user_id")[:limit]
    ]
    types = [_type_alpha(t) for t in (QuestType.RANK, QuestType.IMAGE, QuestType.LABEL)]
    return QualityOverview(types=types, contributors=contributors)
