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
