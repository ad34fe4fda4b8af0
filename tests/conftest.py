"""Shared fixtures: a fake OpenAI-compatible upstream and a real Celery worker on the test database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import pytest
import redis
from django.utils import timezone

from ludus_dev.fake_upstream import ServerThread

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
ALL_QUEUES = "default,pipeline,gen.local,gen.openai,gen.vllm"


@pytest.fixture(scope="session", autouse=True)
def _empty_test_redis() -> None:
    """Start from an empty Redis test database, as the database starts from a new one: what an
    earlier run left there (an endpoint's figures under an id the new database hands out again,
    tasks no worker took) is not this run's. Only the database `make test` reserves for tests."""
    from django.conf import settings

    from ludus_dev.__main__ import TEST_REDIS_DB

    if urlparse(settings.REDIS_URL).path == f"/{TEST_REDIS_DB}":
        redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerThread]:
    server = ServerThread().start()
    yield server
    server.stop()


def _test_database_url() -> str:
    from django.conf import settings
    from django.db import connection

    parsed = urlparse(settings.DATABASE_URL)
    return parsed._replace(path="/" + connection.settings_dict["NAME"]).geturl()


def start_worker(
    queues: str = ALL_QUEUES, concurrency: int = 16, name: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `celery worker` as a subprocess against the test database; wait until it announces itself."""
    from django.conf import settings

    from modelhub.presence import presence_expires_in

    hostname = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    env |= {
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env |= {"LUDUS_READ_TIMEOUT": "3", "LUDUS_CONNECT_TIMEOUT": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", queues, "-P", "threads",
         "-c", str(concurrency), "-n", hostname, "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while presence_expires_in(hostname=hostname) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("celery worker did not start")
        time.sleep(0.1)
    return proc, hostname


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll until predicate() is truthy; return its value or fail with the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def dumps(obj: object) -> str:
    return json.dumps(obj)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a sync test.

    Not asyncio.run in this thread: the browser tests' Playwright (sync API) keeps an event loop
    running in the main thread for the rest of the session, and asyncio.run refuses to nest.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


_frames: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


async def receive_frame(comm: Any, timeout: float = 10) -> Any:
    """The next frame from a generations socket (a WebsocketCommunicator), whose messages are one
    frame or an array of frames in order."""
    buffered = _frames.setdefault(comm, [])
    if not buffered:
        data = await comm.receive_json_from(timeout=timeout)
        buffered.extend(data if isinstance(data, list) else [data])
    return buffered.pop(0)
