"""A broker that cannot be reached when answers are created: the request that made them succeeds,
and the answers end at once in a stored, visible error."""

from __future__ import annotations

import kombu.exceptions
import pytest
from celery import current_app

from modelhub import services
from modelhub.models import GenerationStatus
from tests.factories import ModelFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_answers_whose_task_cannot_be_published_end_in_a_visible_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broker_down(*args: object, **kwargs: object) -> None:
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6390.")

    monkeypatch.setattr(current_app, "send_task", broker_down)
    model = ModelFactory.create()
    generation = services.generation_create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        params=services.generation_params(model=model),
        session_key="s",
    )
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.ERROR
    assert generation.error == services.lifecycle.QUEUE_UNREACHABLE
    assert generation.finished_at is not None and generation.last_seq == 1


def test_answers_whose_task_is_published_stay_queued(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sent: list[tuple[object, ...]] = []
    monkeypatch.setattr(current_app, "send_task", lambda *args, **kwargs: sent.append(args))
    model = ModelFactory.create()
    generation = services.generation_create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        params=services.generation_params(model=model),
        session_key="s",
    )
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.QUEUED and len(sent) == 1


def test_the_reaper_publishes_again_only_answers_whose_task_was_lost(monkeypatch, settings) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from modelhub.models import Generation
    from modelhub.redis_clients import client as redis_client

    sent: list[tuple[object, ...]] = []
    monkeypatch.setattr(
        current_app, "send_task", lambda *args, **kwargs: sent.append(kwargs["args"])
    )
    settings.GENERATION_STALE_AFTER = 5
    model = ModelFactory.create()
    vouched, lost, young = (
        services.generation_create(
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            params=services.generation_params(model=model),
            session_key="s",
        )
        for _ in range(3)
    )
    assert len(sent) == 3  # published when created, each marked in Redis
    old = timezone.now() - timedelta(seconds=60)
    Generation.objects.filter(id__in=[vouched.id, lost.id]).update(created_at=old)
    # Their tasks went with the broker; the young one may still be on its way to a worker.
    redis_client().delete(f"ludus:published:{lost.id}", f"ludus:published:{young.id}")

    assert services.generations_requeue_lost() == 1
    assert sent[-1] == (str(lost.id),)
    assert services.generations_requeue_lost() == 0  # the new task vouches for it again
