"""Reads of the leaderboard: the counted vote set and its exclusions, snapshots, the sampling
weights in force and their history, and the fairness report."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from arena import sampling
from arena.models import (
    HELD_STATUSES,
    HoldStatus,
    LeaderboardSnapshot,
    Mode,
    SamplingWeights,
    Vote,
    VoterHold,
)
from arena.selectors import WINNER, battle_log_rows, sampling_candidates, vote_judge
from modelhub.models import GenerationStatus, Modality, Model

# Votes with a pairwise verdict on a two-model battle: the ones a leaderboard could use.
PAIR_VOTES = Q(battle__model_b__isnull=False, choice__in=list(WINNER))
# Both answers of the voted turn came to their end: a vote on an answer that errored (its worker
# died, its model failed) or was stopped judges the failure, not the model. (Such votes are still
# accepted: the voter gets the reveal. A finished answer never changes state again, so a vote
# counted once stays counted.)
ANSWERED = Q(
    turn__generation_a__status=GenerationStatus.DONE,
    turn__generation_b__status=GenerationStatus.DONE,
)
_BLIND = Q(battle__flagged=False, battle__leaked=False, leaked=False) & Q(
    anony=True, battle__mode=Mode.ANONYMOUS
)
COUNTED = _BLIND & ANSWERED
_HOLDS = VoterHold.objects.filter(status__in=HELD_STATUSES)
# The voter is held out for review (an account, or for an anonymous vote its browser session).
HELD = Q(Exists(_HOLDS.filter(user_id=OuterRef("user_id")))) | Q(
    Exists(_HOLDS.filter(user__isnull=True, session_key=OuterRef("session_key"))),
    user__isnull=True,
)
# Each excluded vote is counted once, under the first reason that applies.
EXCLUSION_REASONS: dict[str, str] = {
    "flagged": "battle flagged for abuse or moderation",
    "leaked": "a model's identity leaked before the vote",
    "not_anonymous": "not a blind vote (side-by-side battle, or cast after the reveal)",
    "unfinished": "an answer ended in an error or was stopped",
    "held": "the voter is held for review (anomalous voting)",
}
_EXCLUSION_FILTERS: dict[str, Q] = {
    "flagged": Q(battle__flagged=True),
    "leaked": Q(battle__flagged=False) & (Q(leaked=True) | Q(battle__leaked=True)),
    "not_anonymous": Q(battle__flagged=False, battle__leaked=False, leaked=False)
    & (Q(anony=False) | ~Q(battle__mode=Mode.ANONYMOUS)),
    "unfinished": _BLIND & ~ANSWERED,
    "held": COUNTED & HELD,
}

CountRow = tuple[str, str, str, tuple[str, ...], int]


def counted_votes(*, include_held: bool = False) -> QuerySet[Vote]:
    """The votes the boards count; ``include_held`` adds those of voters held for review (what
    the anomaly scan examines)."""
    if include_held:
        return Vote.objects.filter(PAIR_VOTES & COUNTED)
    return Vote.objects.filter(PAIR_VOTES & COUNTED & ~HELD)


def vote_exclusions() -> dict[str, int]:
    """Excluded pairwise votes per reason (one aggregate query)."""
    aggregates = {
        f"excluded_{reason}": Count("id", filter=condition)
        for reason, condition in _EXCLUSION_FILTERS.items()
    }
    found = Vote.objects.filter(PAIR_VOTES).aggregate(**aggregates)
    return {reason: found[f"excluded_{reason}"] for reason in _EXCLUSION_FILTERS}


def vote_count_rows(*, after_id: int = 0) -> list[CountRow]:
    """Counted votes aggregated in one SQL pass: (model_a, model_b, winner, categories, count),
    grouped by the battle's models, the verdict and the battle's category list; ``after_id``
    counts only the votes with a larger id (those since a snapshot)."""
    votes = counted_votes()
    if after_id:
        votes = votes.filter(id__gt=after_id)
    rows = (
        votes.values_list(
            "battle__model_a__name", "battle__model_b__name", "choice", "battle__categories"
        )
        .annotate(n=Count("id"))
        .order_by()
    )
    return [(a, b, WINNER[choice], tuple(cats or ()), n) for a, b, choice, cats, n in rows]


def pack_ids(ids: Iterable[int]) -> bytes:
    """Sorted ids, delta-encoded and zlib-compressed (``LeaderboardSnapshot.vote_ids``)."""
    array = np.fromiter(ids, dtype=np.int64)
    return zlib.compress(np.diff(array, prepend=0).astype("<i8").tobytes(), 6)


def unpack_ids(blob: bytes | memoryview) -> list[int]:
    return [int(x) for x in unpack_id_array(blob)]


def unpack_id_array(blob: bytes | memoryview) -> np.ndarray:
    deltas = np.frombuffer(zlib.decompress(bytes(blob)), dtype="<i8")
    return np.cumsum(deltas)


def votes_by_ids(ids: list[int]) -> QuerySet[Vote]:
    # One array parameter instead of an IN list with a placeholder per id.
    return Vote.objects.filter(id__in=RawSQL("SELECT unnest(%s::bigint[])", (ids,)))


@dataclass(frozen=True)
class VoteSet:
    ids: list[int]
    packed: bytes
    exclusions: dict[str, int]
    count_rows: list[CountRow]


def vote_set_read() -> VoteSet:
    """The counted vote set: ids, packed ids, exclusions and count rows (run it in one
    REPEATABLE READ transaction for the parts to agree)."""
    ids = list(counted_votes().order_by("id").values_list("id", flat=True))
    return VoteSet(ids, pack_ids(ids), vote_exclusions(), vote_count_rows())


@dataclass(frozen=True)
class VoteDelta:
    """The counted votes after a snapshot's last id: their ids and count rows."""

    ids: list[int]
    count_rows: list[CountRow]


def vote_delta_read(*, after_id: int) -> VoteDelta:
    """The counted votes with an id above ``after_id`` (run it in one REPEATABLE READ transaction
    for the parts to agree). An index range on the primary key: cheap however large the arena."""
    ids = list(counted_votes().filter(id__gt=after_id).order_by("id").values_list("id", flat=True))
    return VoteDelta(ids, vote_count_rows(after_id=after_id) if ids else [])


# -- voters under review ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewVotes:
    """The counted votes of a period, held voters' included, as an anomaly scan reads them:
    battle-log rows (a ``judge`` each), who each judge is (account id or browser session) and
    each judge's seconds from the answers' end to the vote."""

    rows: list[dict[str, Any]]
    voters: dict[str, tuple[int | None, str]]
    vote_seconds: dict[str, list[float]]


def votes_for_review(*, since: Any) -> ReviewVotes:
    votes = counted_votes(include_held=True).filter(created_at__gte=since)
    rows = list(battle_log_rows(votes))
    voters: dict[str, tuple[int | None, str]] = {}
    seconds: dict[str, list[float]] = defaultdict(list)
    for user_id, session_key, ms in votes.values_list(
        "user_id", "session_key", "time_to_vote_ms"
    ).order_by("id"):
        judge = vote_judge(user_id=user_id, session_key=session_key)
        voters[judge] = (user_id, "" if user_id is not None else session_key)
        if ms is not None:
            seconds[judge].append(ms / 1000)
    return ReviewVotes(rows, voters, dict(seconds))


def voter_holds(*, limit: int = 200) -> list[VoterHold]:
    """Voters held for review first (oldest first), then the latest reviewed ones."""
    waiting = list(
        VoterHold.objects.filter(status=HoldStatus.HELD)
        .select_related("user")
        .order_by("created_at", "id")
    )
    reviewed = list(
        VoterHold.objects.exclude(status=HoldStatus.HELD)
        .select_related("user", "reviewed_by")
        .order_by("-reviewed_at", "-id")[:limit]
    )
    return waiting + reviewed


# -- sampling weights -------------------------------------------------------------------------


def sampling_pool() -> QuerySet[Model]:
    """The text models the sampler may draw: enabled, arena-eligible, with an enabled endpoint.

    Health is left out on purpose: endpoints are unprobed for a few seconds after every start and
    flap with load, which changes which battles can start now, not the weights in force."""
    return (
        Model.objects.filter(
            enabled=True,
            arena_eligible=True,
            endpoints__enabled=True,
            modalities__contains=[Modality.TEXT],
        )
        .distinct()
        .order_by("name")
    )


def sampling_weights_current() -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy, weights) of the text pool: per model its base weight, its effective weight after
    boosts, and its share of battle appearances under the pair distribution. Weights are empty
    when fewer than two models are in the pool (no battle can be sampled)."""
    row, candidates = sampling_candidates(list(sampling_pool()), key=lambda m: m.name)
    policy = {
        "new_model_boost": row.new_model_boost,
        "new_model_until_votes": row.new_model_until_votes,
        "target_boost": row.target_boost,
    }
    if len(candidates) < 2:
        return policy, {}
    share: dict[str, float] = defaultdict(float)
    for (a, b), p in sampling.pair_distribution(candidates, **policy).items():
        share[a] += p / 2
        share[b] += p / 2
    weights = {
        c.key: {
            "weight": c.weight,
            "effective": sampling.effective_weight(c, **policy),  # type: ignore[arg-type]
            "share": round(share.get(c.key, 0.0), 6),
        }
        for c in candidates
    }
    return policy, weights


def sampling_weights_latest() -> SamplingWeights | None:
    return SamplingWeights.objects.order_by("-recorded_at", "-id").first()


def sampling_weights_history(*, limit: int = 20) -> list[SamplingWeights]:
    """The latest changes of the weights, newest first (rows without weights are skipped)."""
    return list(SamplingWeights.objects.exclude(weights={}).order_by("-recorded_at", "-id")[:limit])


# -- snapshots --------------------------------------------------------------------------------


def snapshot_latest() -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.defer("vote_ids").order_by("-created_at", "-id").first()


def snapshot_latest_with_ids() -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.order_by("-created_at", "-id").first()


def snapshot_latest_live_marker() -> tuple[int, dict[str, Any]]:
    """The latest snapshot's id and, when it is live, what it added to its base
    (``data["live"]``; {} for a full snapshot), read without loading the rest of its data."""
    row = (
        LeaderboardSnapshot.objects.order_by("-created_at", "-id")
        .values_list("id", "live", "data__live")
        .first()
    )
    if row is None:
        return 0, {}
    return row[0], (row[2] or {}) if row[1] else {}


def snapshot_full_latest() -> LeaderboardSnapshot | None:
    """The latest full snapshot (every board refitted), the base of live snapshots."""
    return LeaderboardSnapshot.objects.filter(live=False).order_by("-created_at", "-id").first()


def snapshots_newest_first() -> QuerySet[LeaderboardSnapshot]:
    return LeaderboardSnapshot.objects.defer("vote_ids", "data").order_by("-created_at", "-id")


def snapshot_get(*, snapshot_id: int) -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.filter(id=snapshot_id).first()


# -- fairness ---------------------------------------------------------------------------------


def fairness_report(*, count_rows: list[CountRow]) -> dict[str, Any]:
    """Each model's and organization's share of battles and of counted votes, and every model's
    status (deprecated, outside the arena pool) so none disappears silently.

    Battles are those with a counted vote: counting every anonymous battle would name, from two
    snapshots apart, the models of a battle nobody has voted on yet."""
    battles: dict[str, int] = defaultdict(int)
    rows = (
        counted_votes()
        .values_list("battle__model_a__name", "battle__model_b__name")
        .annotate(n=Count("battle_id", distinct=True))
        .order_by()
    )
    total_battles = 0
    for a, b, n in rows:
        battles[a] += n
        battles[b] += n
        total_battles += n
    votes: dict[str, int] = defaultdict(int)
    total_votes = 0
    for a, b, _, _, n in count_rows:
        votes[a] += n
        votes[b] += n
        total_votes += n
    meta: dict[str, dict[str, Any]] = {
        m["name"]: dict(m)
        for m in Model.objects.values(
            "name",
            "display_name",
            "organization",
            "license",
            "deprecated",
            "enabled",
            "arena_eligible",
        )
    }
    models = []
    for name in sorted(set(battles) | set(votes) | set(meta)):
        info: dict[str, Any] = meta.get(name, {})
        models.append(
            {
                "model": name,
                "display_name": info.get("display_name") or name,
                "organization": info.get("organization") or "",
                "license": info.get("license") or "",
                "deprecated": bool(info.get("deprecated")),
                # Not in the public arena pool: disabled or not arena-eligible (private).
                "private": not (info.get("enabled", True) and info.get("arena_eligible", True)),
                "battles": battles.get(name, 0),
                "votes": votes.get(name, 0),
                # Each battle has two models: shares of appearances sum to 1.
                "battle_share": battles.get(name, 0) / (2 * total_battles) if total_battles else 0,
                "vote_share": votes.get(name, 0) / (2 * total_votes) if total_votes else 0,
            }
        )
    orgs: dict[str, dict[str, Any]] = {}
    for m in models:
        org = orgs.setdefault(
            str(m["organization"] or "(none)"),
            {"battles": 0, "votes": 0, "battle_share": 0.0, "vote_share": 0.0, "models": 0},
        )
        org["models"] += 1
        for key in ("battles", "votes", "battle_share", "vote_share"):
            org[key] += m[key]
    return {
        "battles": total_battles,
        "votes": total_votes,
        "models": models,
        "organizations": [{"organization": k, **v} for k, v in sorted(orgs.items())],
    }
