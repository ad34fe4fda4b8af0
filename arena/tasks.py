"""Celery tasks of the arena: thin adapters that call one service."""

from __future__ import annotations

from celery import shared_task
from django.core.management import call_command

from arena.leaderboard import services as leaderboard_services


# Beat runs it every 60 s; a run that outlives the next tick just delays it (expires drops
# the stale duplicate), and a snapshot is only written when the counted vote set changed.
@shared_task(ignore_result=True, expires=55, soft_time_limit=240, time_limit=300)
def refresh_leaderboard() -> int:
    """Publish (or re-confirm) the leaderboard snapshot; returns its id."""
    return leaderboard_services.leaderboard_refresh().id


# Scheduled by a counted vote (leaderboard_publish_soon), about a second after it; a publish that
# waited longer than the live board promises is dropped (the full refresh follows).
@shared_task(ignore_result=True, expires=30, soft_time_limit=20, time_limit=30)
def publish_live_leaderboard() -> int | None:
    """Publish a live snapshot with the votes counted since the last full one; returns its id."""
    snapshot = leaderboard_services.leaderboard_publish_live()
    return None if snapshot is None else snapshot.id


# Beat runs it hourly. Sessions expire but stay stored until deleted; every anonymous visitor who
# starts a battle gets one.
@shared_task(ignore_result=True, expires=3000, soft_time_limit=600, time_limit=900)
def clear_expired_sessions() -> None:
    """Delete expired sessions (Django's clearsessions)."""
    call_command("clearsessions")
