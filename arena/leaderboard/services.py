"""Writes of the leaderboard: publishing a snapshot and recording the sampling weights."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from arena.leaderboard import boards, selectors
from arena.leaderboard.export import export_line
from arena.models import LeaderboardSnapshot, SamplingWeights
from arena.ratings import DEFAULT_PRIOR
from arena.selectors import battle_log_rows


def default_params() -> dict[str, Any]:
    """The fit parameters of a snapshot; the settings name the provisional threshold and how
    "both bad" counts."""
    return {
        "method": "bt",
        "rounds": 1000,
        "style_rounds": 100,
        "elo_rounds": 100,
        "seed": 0,
        "interval": "bootstrap",
        "ties": "davidson" if settings.LEADERBOARD_BOTHBAD == "davidson" else "half",
        "bothbad": settings.LEADERBOARD_BOTHBAD,
        "prior": DEFAULT_PRIOR,
        "min_votes": settings.LEADERBOARD_MIN_VOTES,
    }


def sampling_weights_record() -> SamplingWeights | None:
    """Store the weights in force when they differ from the last stored row; return the row in
    force (None before two models are in the pool). Restarts and health probes change nothing
    here, so the history has one row per actual change."""
    policy, weights = selectors.sampling_weights_current()
    last = selectors.sampling_weights_latest()
    if not weights:
        return last
    if last is not None and last.policy == policy and last.weights == weights:
        return last
    return SamplingWeights.objects.create(policy=policy, weights=weights)


def leaderboard_refresh(**overrides: Any) -> LeaderboardSnapshot:
    """Publish a snapshot of the counted votes (the beat task, every minute).

    All reads run in one REPEATABLE READ transaction, so the counts, the ids and the exported
    battles describe the same vote set. An unchanged vote set (and parameters) only moves the
    latest snapshot's ``refreshed_at``; the sampling weights are recorded when they change.
    """
    params = default_params() | overrides
    now = timezone.now()
    sampling_weights_record()
    latest = selectors.snapshot_latest_with_ids()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # inside a caller's transaction (tests) its isolation level applies
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        vote_set = selectors.vote_set_read()
        unchanged = (
            latest is not None
            and bytes(latest.vote_ids) == vote_set.packed
            and {k: latest.params.get(k) for k in params} == params
        )
        lines = (
            []
            if unchanged or not vote_set.ids
            else list(
                map(
                    export_line,
                    battle_log_rows(selectors.votes_by_ids(vote_set.ids), extra=True),
                )
            )
        )
        fairness = selectors.fairness_report(count_rows=vote_set.count_rows)
    if unchanged:
        assert latest is not None
        LeaderboardSnapshot.objects.filter(id=latest.id).update(refreshed_at=now)
        latest.refreshed_at = now
        return latest
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line)
    data = boards.boards_fit(vote_set.count_rows, lines, params)
    data["fairness"] = fairness
    params = params | {"commands": boards.commands(params, data["categories"])}
    return LeaderboardSnapshot.objects.create(
        refreshed_at=now,
        method=params["method"],
        params=params,
        vote_hash=digest.hexdigest(),
        votes_counted=len(vote_set.ids),
        votes_excluded=vote_set.exclusions,
        vote_ids=vote_set.packed,
        data=data,
    )
