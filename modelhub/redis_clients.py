"""The Redis clients Ludus's own code uses (outside Celery's broker), and the connection pool of
Django's Redis cache.

One synchronous client per process: redis-py clients are thread-safe handles on a connection pool,
so every thread (request threads, Celery task threads) shares it. Asynchronous clients belong to
the event loop that opened their connections: `async_client()` gives one per loop.

Django's cache handler keeps its cache objects per context, and every request on a2wsgi's threads
runs in a context of its own, so each request builds a new cache client, which would open a new
connection pool and a new TCP connection to Redis (for the session, the rate limits). As the
cache's ``pool_class``, `ProcessConnectionPool` hands every cache client of the process one pool per
address and options instead.
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


class ProcessConnectionPool(redis.ConnectionPool):
    """A ``redis.ConnectionPool`` whose ``from_url`` gives one pool per URL and options per process
    (redis-py resets a pool's connections in a forked child by itself)."""

    _pools: dict[tuple[str, str], redis.ConnectionPool] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Any:
        key = (url, repr(sorted(kwargs.items(), key=lambda item: item[0])))
        with _lock:
            pool = cls._pools.get(key)
            if pool is None:
                pool = cls._pools[key] = super().from_url(url, **kwargs)
        return pool


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
