"""Celery tasks of the collection app: thin adapters that call one service."""

from __future__ import annotations

from celery import shared_task

from collection import augment, services, shards


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=30, time_limit=60)
def quests_from_vote(vote_id: int) -> int:
    """Turn one stored arena vote into its quests (idempotent: each item has a unique source)."""
    return len(services.quests_from_vote(vote_id=vote_id))


# Beat runs it every minute; a lease that ran out gives its slot back.
@shared_task(ignore_result=True, expires=55, soft_time_limit=30, time_limit=60)
def expire_leases() -> int:
    return services.assignments_expire()


# Sent to the pipeline queue (datasets.PIPELINE_QUEUE) by name (datasets.FREEZE_TASK): by the
# service that creates the version, and again for each stage so that idle pipeline workers help.
@shared_task(ignore_result=True, acks_late=True, soft_time_limit=3300, time_limit=3600)
def dataset_freeze(version_id: int) -> None:
    """Work on one version's freeze: claim its pending shards one by one, run the global passes,
    store the rows. Idempotent: a frozen version is left alone; shards already done are kept."""
    shards.dataset_version_freeze(version_id=version_id)


# Sent to the pipeline queue by name (augment.AUGMENT_TASK) by the service that creates the job.
@shared_task(ignore_result=True, acks_late=True, soft_time_limit=3300, time_limit=3600)
def dataset_augment(augmentation_id: int) -> None:
    """Make one augmentation's synthetic rows through the serving pool (idempotent: a finished
    job is left alone; an interrupted one starts over)."""
    augment.augmentation_run(augmentation_id=augmentation_id)


# Beat runs it every few minutes (worker.celery): contributors' reliabilities, gold items' XP and
# held XP follow the answers.
@shared_task(ignore_result=True, expires=250, soft_time_limit=240, time_limit=280)
def refresh_reliabilities() -> int:
    from collection import reliabilities

    return reliabilities.reliabilities_refresh().contributors


# Beat runs it every five minutes on the default queue: voters it flags are held out of the
# published leaderboards until staff review them (/staff/anomalies/).
@shared_task(ignore_result=True, expires=240, soft_time_limit=240, time_limit=280)
def scan_voter_anomalies() -> int:
    """Assess the recent votes' voters and hold the flagged ones; returns how many were held."""
    from collection import anomalies

    return len(anomalies.voter_anomalies_scan().held)


# Beat runs it every five minutes on the default queue: battles whose prompt or answers read as
# offensive wait in the curators' review queue.
@shared_task(ignore_result=True, expires=240, soft_time_limit=240, time_limit=280)
def scan_offensive_battles() -> int:
    """Queue the battles created since the last scan that read as offensive; returns how many."""
    from collection import review

    return review.moderation_scan()
