"""Writes of the leaderboard: publishing a snapshot and recording the sampling weights."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

import numpy as np
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from arena.leaderboard import boards, selectors
from arena.leaderboard.export import export_line
from arena.models import HoldStatus, LeaderboardSnapshot, SamplingWeights, VoterHold
from arena.ratings import DEFAULT_PRIOR
from arena.selectors import battle_log_rows
from modelhub.redis_clients import client as redis_client

logger = logging.getLogger(__name__)

# A counted vote schedules one live publish this long after it (a burst of votes shares it);
# the pending key expires on its own should the task be lost.
LIVE_DELAY_S = 1.0
LIVE_PENDING_KEY = "ludus:leaderboard:live-pending"
LIVE_PENDING_TTL_S = 30
# Live snapshots older than this, or past the newest LIVE_KEEP_MAX, are deleted by the next
# publish (one per burst of votes would otherwise pile up: each holds its base's data, a few MB at
# a hundred models); full snapshots are kept.
LIVE_KEEP = timedelta(minutes=10)
LIVE_KEEP_MAX = 20
# The tasks, sent by name: arena.tasks calls these services.
PUBLISH_LIVE_TASK = "arena.tasks.publish_live_leaderboard"
REFRESH_TASK = "arena.tasks.refresh_leaderboard"


def _live_prune(now: Any) -> None:
    live = LeaderboardSnapshot.objects.filter(live=True)
    live.filter(created_at__lt=now - LIVE_KEEP).delete()
    kept = list(live.order_by("-id").values_list("id", flat=True)[:LIVE_KEEP_MAX])
    if len(kept) == LIVE_KEEP_MAX:
        live.filter(id__lt=kept[-1]).delete()


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


def _repeatable_read() -> None:
    """Make the transaction just opened REPEATABLE READ (inside a caller's transaction, as in
    tests, its isolation level applies)."""
    if len(connection.atomic_blocks) == 1:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def leaderboard_refresh(**overrides: Any) -> LeaderboardSnapshot:
    """Publish a snapshot of the counted votes (the beat task, every minute).

    All reads run in one REPEATABLE READ transaction, so the counts, the ids and the exported
    battles describe the same vote set. An unchanged vote set (and parameters) only moves the
    latest snapshot's ``refreshed_at``; the sampling weights are recorded when they change.
    """
    params = default_params() | overrides
    now = timezone.now()
    sampling_weights_record()
    latest = selectors.snapshot_full_latest()
    _live_prune(now)
    with transaction.atomic():
        _repeatable_read()
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


# -- live snapshots ---------------------------------------------------------------------------


def leaderboard_publish_soon() -> bool:
    """Schedule a live publish (``leaderboard_publish_live``) in about LIVE_DELAY_S; the votes
    counted until it runs share it. True when this call scheduled it. Called after a vote's
    transaction commits; a failure (Redis or the broker down) is logged and never fails the vote:
    the full refresh publishes it within a minute."""
    try:
        if not redis_client().set(LIVE_PENDING_KEY, b"1", nx=True, ex=LIVE_PENDING_TTL_S):
            return False
        current_app.send_task(PUBLISH_LIVE_TASK, countdown=LIVE_DELAY_S, expires=30)
    except Exception:
        logger.exception("could not schedule a live leaderboard publish")
        return False
    return True


def leaderboard_publish_live() -> LeaderboardSnapshot | None:
    """Publish a live snapshot: the latest full snapshot's count cells plus the counted votes
    since its last vote id, refitted from counts (Bradley-Terry, sandwich intervals). Every other
    board is the full snapshot's; the next full refresh refits them all. Without a full snapshot
    yet, publishes a full one. Returns the latest snapshot (None: nothing counted yet).

    A vote whose transaction commits after a younger vote was read into the full snapshot waits
    for the next full refresh (live snapshots only add ids above the full snapshot's last one);
    so does any change that removes votes (a flag, a held voter), which schedules a full refresh.
    """
    redis_client().delete(LIVE_PENDING_KEY)  # votes from here on schedule the next publish
    base = selectors.snapshot_full_latest()
    if base is None:
        return leaderboard_refresh()
    latest_id, seen = selectors.snapshot_latest_live_marker()
    base_ids = selectors.unpack_id_array(base.vote_ids)
    last_id = int(base_ids[-1]) if len(base_ids) else 0
    with transaction.atomic():
        _repeatable_read()
        delta = selectors.vote_delta_read(after_id=last_id)
    now = timezone.now()
    if not delta.ids or (
        seen.get("base") == base.id
        and seen.get("added") == len(delta.ids)
        and seen.get("last_id") == delta.ids[-1]
    ):
        return selectors.snapshot_get(snapshot_id=latest_id)
    params = boards.live_params(base.params)
    data = boards.live_boards_fit(base.data, delta.count_rows, params)
    data["live"] = {"base": base.id, "added": len(delta.ids), "last_id": delta.ids[-1]}
    params = params | {"commands": boards.live_commands(params, data["categories"])}
    ids = np.concatenate([base_ids, np.asarray(delta.ids, dtype=np.int64)])
    snapshot = LeaderboardSnapshot.objects.create(
        refreshed_at=now,
        method=params["method"],
        params=params,
        vote_hash="",
        votes_counted=len(ids),
        votes_excluded=base.votes_excluded,
        vote_ids=selectors.pack_ids(ids),
        data=data,
        live=True,
    )
    _live_prune(now)
    return snapshot


# -- voters held out for review ---------------------------------------------------------------


def _refresh_after_commit() -> None:
    """A change of who is held changes the counted vote set: a full refresh publishes it."""
    transaction.on_commit(lambda: current_app.send_task(REFRESH_TASK, expires=55), robust=True)


def voter_hold(
    *,
    user_id: int | None,
    session_key: str,
    judge: str,
    reasons: list[str],
    evidence: dict[str, Any],
) -> VoterHold | None:
    """Hold a voter's votes out of the published boards until staff review them. A voter already
    known (held, confirmed or released by staff) is left as it is: None. A voter is an account
    (``user_id``) or, for anonymous votes, a browser session (``session_key``)."""
    if user_id is None and not session_key:
        raise ValueError("a hold names an account or a session")
    with transaction.atomic():
        hold, created = VoterHold.objects.get_or_create(
            judge=judge,
            defaults={
                "user_id": user_id,
                "session_key": "" if user_id is not None else session_key,
                "reasons": reasons,
                "evidence": evidence,
            },
        )
        if not created:
            return None
        _refresh_after_commit()
    return hold


def voter_hold_review(*, hold_id: int, reviewer_id: int, release: bool) -> VoterHold:
    """Staff's verdict on a held voter: release (the votes count again) or confirm (they stay
    held). VoterHold.DoesNotExist when there is no such hold."""
    with transaction.atomic():
        hold = VoterHold.objects.select_for_update().get(id=hold_id)
        was_held = hold.status != HoldStatus.RELEASED
        hold.status = HoldStatus.RELEASED if release else HoldStatus.CONFIRMED
        hold.reviewed_at = timezone.now()
        hold.reviewed_by_id = reviewer_id
        hold.save(update_fields=["status", "reviewed_at", "reviewed_by"])
        if was_held != (hold.status != HoldStatus.RELEASED):
            _refresh_after_commit()
    return hold
