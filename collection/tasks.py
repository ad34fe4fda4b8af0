"""Celery tasks of the collection app: thin adapters that call one service."""

from __future__ import annotations

from celery import shared_task

from collection import services


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=30, time_limit=60)
def quests_from_vote(vote_id: int) -> int:
    """Turn one stored arena vote into its quests (idempotent: each item has a unique source)."""
    return len(services.quests_from_vote(vote_id=vote_id))


# Beat runs it every minute; a lease that ran out gives its slot back.
@shared_task(ignore_result=True, expires=55, soft_time_limit=30, time_limit=60)
def expire_leases() -> int:
    return services.assignments_expire()


# Sent to the pipeline queue (datasets.PIPELINE_QUEUE) by the service that creates the version.
@shared_task(ignore_result=True, acks_late=True, soft_time_limit=3300, time_limit=3600)
def dataset_freeze(version_id: int) -> None:
    """Freeze one dataset version (idempotent: a frozen one is left alone; a retry starts over)."""
    from collection import datasets

    datasets.dataset_version_freeze(version_id=version_id)
