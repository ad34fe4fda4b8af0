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


# Beat runs it hourly. Sessions expire but stay stored until deleted; every anonymous visitor who
# starts a battle gets one.
@shared_task(ignore_result=True, expires=3000, soft_time_limit=600, time_limit=900)
def clear_expired_sessions() -> None:
    """Delete expired sessions (Django's clearsessions)."""
    call_command("clearsessions")
