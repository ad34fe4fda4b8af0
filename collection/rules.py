"""The game's rules: XP per quest, levels, bounties, daily goals and badges. Plain data and pure
functions (no Django), shown as they are on the public rules page."""

from __future__ import annotations

from dataclasses import dataclass

# Base XP per submitted answer, by quest type. Written work pays most.
XP = {"rank": 3, "label": 2, "reference": 10, "image": 3, "review": 2}
# How many people answer each item before consensus, by type.
OVERLAP = {"rank": 3, "label": 3, "reference": 1, "image": 3, "review": 1}
# Router weight per type: what the project needs most, before the backlog is counted.
TYPE_WEIGHT = {"reference": 1.5, "review": 1.4, "rank": 1.0, "image": 1.0, "label": 0.8}
LEASE_SECONDS = 15 * 60
# XP totals at which each level starts: level 1 at 0 XP, level 2 at 10 XP...
LEVELS = (0, 10, 30, 60, 100, 160, 250, 400, 600, 1000)
LABELS = (
    ("helpful", "Helpful"),
    ("factual_error", "Factual error"),
    ("refusal", "Refusal"),
    ("unsafe", "Unsafe"),
    ("code_broken", "Code broken"),
    ("ignores_image", "Ignores the image"),
    ("identity_leak", "Identity leak"),
)
# The labels of a tool-use label quest ("was this call right?"), on a reply that called tools.
TOOL_LABELS = (
    ("tool_right", "Right tool and arguments"),
    ("tool_wrong", "Wrong tool"),
    ("tool_arguments_wrong", "Wrong arguments"),
    ("tool_needless", "Should not have called a tool"),
    ("tool_result_misused", "Result misused"),
)


# Reliability at which an answer earns its full XP; below it the XP shrinks linearly to none for a
# coin (0.5). Below settings.QUEST_RELIABILITY_MIN, XP is also held pending.
RELIABLE = 0.8


def xp_factor(reliability: float) -> float:
    """The share of the base XP an answer earns from its author's reliability."""
    return min(max((reliability - 0.5) / (RELIABLE - 0.5), 0.0), 1.0)


def level_for(xp: int) -> int:
    """The level a settled XP total reaches (1-based)."""
    return sum(1 for threshold in LEVELS if xp >= threshold)


def next_level_at(xp: int) -> int | None:
    """The settled XP at which the next level starts, None at the top."""
    return next((threshold for threshold in LEVELS if threshold > xp), None)


def bounty(quest_type: str, backlog: int) -> int:
    """XP offered per answer: the base XP, raised by the type's weight and by its backlog (up to
    3x the base when 1,000 or more items wait)."""
    boost = 1.0 + min(backlog, 1000) / 500
    return max(1, round(XP[quest_type] * TYPE_WEIGHT[quest_type] * boost))


@dataclass(frozen=True)
class Goal:
    key: str
    title: str
    target: int
    bonus: int


DAILY_GOALS = (
    Goal("votes", "Vote in 10 battles", 10, 5),
    Goal("quests", "Finish 5 quests", 5, 5),
    Goal("reference", "Write a reference answer", 1, 5),
)


@dataclass(frozen=True)
class Badge:
    key: str
    title: str
    description: str


BADGES = (
    Badge("first-quest", "First quest", "Submit your first quest answer."),
    Badge("ten-quests", "Regular", "Submit 10 quest answers."),
    Badge("writer", "Writer", "Have a reference answer accepted by review."),
    Badge("reviewer", "Reviewer", "Review 5 reference answers."),
    Badge("streak-3", "Three days", "Contribute three days in a row."),
    Badge("level-3", "Level 3", f"Reach {LEVELS[2]} settled XP."),
)


def badges_earned(
    *, submitted: int, accepted: int, reviews: int, streak: int, xp: int
) -> list[Badge]:
    earned = {
        "first-quest": submitted >= 1,
        "ten-quests": submitted >= 10,
        "writer": accepted >= 1,
        "reviewer": reviews >= 5,
        "streak-3": streak >= 3,
        "level-3": level_for(xp) >= 3,
    }
    return [badge for badge in BADGES if earned[badge.key]]
