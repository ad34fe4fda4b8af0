"""The Redis clients Ludus's own code uses (outside Django's cache and Celery's broker).

One synchronous client per process: redis-py clients are thread-safe handles on a connection pool,
so every thread (request threads, Celery task threads) shares it. Asynchronous clients belong to
the event loop that opened their connections: `async_client()` gives one per loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

_lock = threading.Lock()
_sync: redis.Redis | None = None
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def client() -> redis.Redis:
    """This process's synchronous client on settings.REDIS_URL."""
    global _sync
    if _sync is None:
        with _lock:
            if _sync is None:
                _sync = redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
    return _sync


def async_client() -> aioredis.Redis:
    """The running event loop's asynchronous client on settings.REDIS_URL."""
    loop = asyncio.get_running_loop()
    found = _async.get(loop)
    if found is None:
        found = _async[loop] = aioredis.Redis.from_url(settings.REDIS_URL)
    return found


async def async_client_close() -> None:
    """Close the running loop's asynchronous client (tests; a server process just exits)."""
    found = _async.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()
