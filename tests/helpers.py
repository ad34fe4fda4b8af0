"""Helpers the test modules share (fixtures live in conftest.py files; helpers live here)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
ALL_QUEUES = "default,pipeline,gen.local,gen.openai,gen.vllm"


def database_url_for_tests() -> str:
    from django.conf import settings
    from django.db import connection

    parsed = urlparse(settings.DATABASE_URL)
    return parsed._replace(path="/" + connection.settings_dict["NAME"]).geturl()


def start_worker(
    queues: str = ALL_QUEUES, concurrency: int = 16, name: str | None = None, pool: str = "threads"
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `celery worker` as a subprocess against the test database; wait until it announces itself."""
    from django.conf import settings

    from modelhub.presence import presence_expires_in

    hostname = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    env |= {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env |= {"LUDUS_READ_TIMEOUT": "3", "LUDUS_CONNECT_TIMEOUT": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", queues, "-P", pool,
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


def rate_window_fresh(margin_s: float = 5.0) -> None:
    """Wait out the last seconds of the rate limits' current minute (arena.ratelimit counts in
    fixed one-minute windows), so that a test's few requests all count in one window."""
    from arena.ratelimit import WINDOW_S

    left = WINDOW_S - time.time() % WINDOW_S
    if left < margin_s:
        time.sleep(left + 0.05)
