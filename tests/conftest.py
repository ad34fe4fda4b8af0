"""Shared fixtures: a fake OpenAI-compatible upstream and a real Celery worker on the test database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from django.contrib.auth.models import User
from django.utils import timezone

from ludus_dev.fake_upstream import ServerThread
from tests.helpers import start_worker, stop_worker, wait_for


@pytest.fixture(scope="session", autouse=True)
def _empty_test_redis() -> None:
    """Start from an empty Redis test database, as the database starts from a new one: what an
    earlier run left there (an endpoint's figures under an id the new database hands out again,
    tasks no worker took) is not this run's. Only the database `make test` reserves for tests."""
    from django.conf import settings

    from ludus_dev.__main__ import TEST_REDIS_DB

    if urlparse(settings.REDIS_URL).path == f"/{TEST_REDIS_DB}":
        redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session", autouse=True)
def _flush_retried_on_deadlock() -> Iterator[None]:
    """A transactional test ends with a TRUNCATE of every table, which deadlocks with a background
    task still writing (the shared worker publishing a live board after the test's vote): the
    server aborts the TRUNCATE, the task commits, and the flush is tried again."""
    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(4):
            try:
                return original(self)
            except CommandError as error:
                if attempt == 3 or "deadlock detected" not in str(error.__cause__):
                    raise
                time.sleep(0.5)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", teardown)
        yield


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerThread]:
    server = ServerThread().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """A real Celery worker (thread pool) consuming every queue, on the test database and Redis."""
    proc, hostname = start_worker()
    yield hostname
    stop_worker(proc)


@pytest.fixture(autouse=True)
def _generations_settled(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that ran the shared worker: wait until the worker has finished every generation
    the test started, before the database is flushed (a TRUNCATE racing a finishing generation's
    transaction deadlocks). Set up after pytest-django's database fixture, so torn down before it.
    Only the test's own: a run interrupted mid-test leaves rows in the reused database that no
    worker will ever finish."""
    started = timezone.now()
    yield
    if "celery_worker" not in request.fixturenames:
        return
    from modelhub.models import Generation, GenerationStatus

    busy = (GenerationStatus.QUEUED, GenerationStatus.STREAMING)
    ours = Generation.objects.filter(status__in=busy, created_at__gte=started)
    wait_for(lambda: not ours.exists(), timeout=30)


@pytest.fixture
def redis_conn() -> redis.Redis:
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Rate-limit windows live in Redis across tests: start every test with none counted."""
    from arena.ratelimit import KEY_PREFIX
    from modelhub.redis_clients import client as redis_client

    client = redis_client()
    for key in client.scan_iter(KEY_PREFIX + "*"):
        client.delete(key)
    yield


@pytest.fixture(autouse=True)
def _no_metrics_token(settings: Any) -> None:
    """Tests start without a metrics token, whatever the shell exports (make env exports make
    run's); a test about the token sets its own."""
    settings.METRICS_TOKEN = ""


# Persona accounts, as the tests speak of them: alice runs the arena (staff), bob is a signed-in
# contributor, charlie is another contributor who must never reach bob's battles or votes.
@pytest.fixture
def alice(db: None) -> User:
    from tests.factories import UserFactory

    return UserFactory.create(username="alice", is_staff=True)


@pytest.fixture
def bob(db: None) -> User:
    from tests.factories import UserFactory

    return UserFactory.create(username="bob")


@pytest.fixture
def charlie(db: None) -> User:
    from tests.factories import UserFactory

    return UserFactory.create(username="charlie")
