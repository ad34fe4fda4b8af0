"""Reads of the collection app: the router's helpers, the game's figures, boards and profiles."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone

from arena import selectors as arena_selectors
from collection import rules
from collection.models import (
    Assignment,
    AssignmentState,
    Contributor,
    Draft,
    ItemStatus,
    QuestItem,
    QuestType,
    XpEntry,
    XpState,
)

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


def quest_cards() -> list[QuestCard]:
    """One card per quest type with open work, in the router's order of need."""
    backlog = quest_backlog()
    return [
        QuestCard(type=t, title=QuestType(t).label, backlog=backlog[t], bounty=b)
        for t, b in quest_bounties_ranked()
    ]


def assignment_of(*, user_id: int, assignment_id: int) -> Assignment | None:
    return (
        Assignment.objects.select_related("item", "item__reviewed")
        .filter(id=assignment_id, user_id=user_id)
        .first()
    )


def draft_text(*, user_id: int, item_id: int) -> str:
    draft = Draft.objects.filter(user_id=user_id, item_id=item_id).first()
    return draft.text if draft else ""


def contributor_reliability(*, user_id: int) -> float:
    """The weight of this contributor's XP and answers. Hook for collection.quality (gold accuracy
    and agreement): 1.0 for everyone until its reliabilities are stored."""
    return 1.0


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
