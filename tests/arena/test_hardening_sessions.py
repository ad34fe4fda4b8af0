"""Sessions: a page that is not found leaves none behind, and expired ones are deleted on the beat
schedule."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from arena.tasks import clear_expired_sessions
from worker.celery import app

pytestmark = pytest.mark.django_db


def test_a_battle_that_is_not_found_creates_no_session() -> None:
    client = Client()
    for path in (f"/b/{uuid.uuid4()}/", f"/b/{uuid.uuid4()}/answer/{uuid.uuid4()}/"):
        response = client.get(path)
        assert response.status_code == 404
        assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert Session.objects.count() == 0


def test_it_deletes_expired_sessions_on_the_beat_schedule() -> None:
    now = timezone.now()
    Session.objects.create(session_key="k" * 32, session_data="", expire_date=now - timedelta(1))
    Session.objects.create(session_key="l" * 32, session_data="", expire_date=now + timedelta(1))

    clear_expired_sessions()

    assert list(Session.objects.values_list("session_key", flat=True)) == ["l" * 32]
    scheduled = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert scheduled["arena.tasks.clear_expired_sessions"]["options"] == {"queue": "default"}
    assert "arena.tasks.clear_expired_sessions" in app.tasks
