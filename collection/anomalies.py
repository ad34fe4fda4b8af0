"""Voter anomalies: the periodic scan that holds anomalous voters out of the published
leaderboards, and the staff's review of them.

The tests are collection.quality's (one-sided voting for a model, alone or as a group of small
accounts, votes too fast to read the answers, the sequential likelihood test); the held state is
the arena's (arena.leaderboard.services.voter_hold / voter_hold_review), which the boards read.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from arena.leaderboard import selectors as leaderboard_selectors
from arena.leaderboard import services as leaderboard_services
from arena.models import VoterHold
from arena.ratings import load_battles
from arena.selectors import vote_judge
from collection.models import Reliability
from collection.quality import assess_voters

# The scan reads the counted votes of this period (held voters' included).
WINDOW = timedelta(days=7)
DECISIONS = ("release", "confirm")
LOW_RELIABILITY = "low reliability"


class AnomalyReviewError(ValueError):
    """A review the service refuses (unknown decision)."""


@dataclass(frozen=True)
class ScanResult:
    votes: int
    voters: int
    flagged: list[str]
    held: list[VoterHold]


def _evidence(
    votes: int, reliability: float, rows: list[dict[str, Any]], seconds: list[float]
) -> dict[str, Any]:
    """What staff see beside the reasons: vote counts, the model the voter favours, timing."""
    won: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    first = last = None
    for row in rows:
        winner = row["winner"]
        outcomes[winner] += 1
        if winner in ("model_a", "model_b"):
            won[row[winner]] += 1
        first = row["tstamp"] if first is None else min(first, row["tstamp"])
        last = row["tstamp"] if last is None else max(last, row["tstamp"])
    decisive = sum(won.values())
    favourite, favourite_wins = won.most_common(1)[0] if won else ("", 0)
    return {
        "votes": votes,
        "reliability": round(reliability, 4),
        "decisive": decisive,
        "ties": outcomes["tie"] + outcomes["tie (bothbad)"],
        "favourite": favourite,
        "favourite_wins": favourite_wins,
        "favourite_share": round(favourite_wins / decisive, 3) if decisive else 0.0,
        "median_seconds_to_vote": round(statistics.median(seconds), 1) if seconds else None,
        "first_vote": first,
        "last_vote": last,
    }


def _unreliable() -> dict[str, Reliability]:
    """Accounts whose stored reliability is below the bar, by judge, where the estimate rests on
    enough answers and votes to be trusted (LUDUS_HOLD_RELIABILITY_BELOW, _MIN_ANSWERS)."""
    bar = settings.HOLD_RELIABILITY_BELOW
    if bar <= 0:
        return {}
    low = Reliability.objects.filter(value__lt=bar).only(
        "user_id", "value", "rankings", "labels", "votes"
    )
    return {
        vote_judge(user_id=r.user_id, session_key=""): r
        for r in low
        if r.rankings + r.labels + r.votes >= settings.HOLD_RELIABILITY_MIN_ANSWERS
    }


def voter_anomalies_scan(*, window: timedelta = WINDOW) -> ScanResult:
    """Assess every voter of the period's counted votes and hold each flagged one out of the
    published boards, and each account among them whose stored reliability is below the bar
    ("low reliability"; the estimate and what it rests on go with the evidence). A voter held or
    reviewed before is left as staff left it."""
    found = leaderboard_selectors.votes_for_review(since=timezone.now() - window)
    if not found.rows:
        return ScanResult(0, 0, [], [])
    battles = load_battles(found.rows, style=True, judges=True)
    reports = assess_voters(battles)
    unreliable = {j: r for j, r in _unreliable().items() if j in found.voters}
    # judge -> (reasons, votes, reliability shown as evidence)
    suspects: dict[str, tuple[list[str], int, float]] = {
        r.judge: (list(r.reasons), r.votes, r.reliability)
        for r in reports
        if r.flagged and r.judge in found.voters
    }
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for row in found.rows:
        rows_of.setdefault(row["judge"], []).append(row)
    for judge, stored in unreliable.items():
        reasons, votes, reliability = suspects.get(
            judge, ([], len(rows_of.get(judge, [])), stored.value)
        )
        suspects[judge] = ([*reasons, LOW_RELIABILITY], votes, reliability)
    held: list[VoterHold] = []
    for judge, (reasons, votes, reliability) in suspects.items():
        user_id, session_key = found.voters[judge]
        evidence = _evidence(votes, reliability, rows_of.get(judge, []),
                             found.vote_seconds.get(judge, []))  # fmt: skip
        if judge in unreliable:
            stored = unreliable[judge]
            evidence |= {
                "reliability_estimate": round(stored.value, 4),
                "reliability_votes": stored.votes,
                "reliability_answers": stored.rankings + stored.labels,
            }
        hold = leaderboard_services.voter_hold(
            user_id=user_id,
            session_key=session_key,
            judge=judge,
            reasons=reasons,
            evidence=evidence,
        )
        if hold is not None:
            held.append(hold)
    return ScanResult(len(found.rows), len(reports), list(suspects), held)


def voter_hold_decide(*, hold_id: int, reviewer: User, decision: str) -> VoterHold:
    """Staff clear a held voter ("release": the votes count again) or confirm the anomaly
    ("confirm": they stay held). AnomalyReviewError on another decision, VoterHold.DoesNotExist
    for an unknown hold; neither changes anything."""
    if decision not in DECISIONS:
        raise AnomalyReviewError(f"Unknown decision {decision!r}: release or confirm.")
    return leaderboard_services.voter_hold_review(
        hold_id=hold_id, reviewer_id=reviewer.pk, release=decision == "release"
    )
