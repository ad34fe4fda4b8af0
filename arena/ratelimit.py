"""Fixed-window rate limits in Redis: one pipelined round trip checks every limit of a request."""

from __future__ import annotations

import time
import weakref
from typing import Any

from django.core.cache import cache

WINDOW_S = 60


def _client() -> Any:
    return cache._cache.get_client(write=True)  # type: ignore[attr-defined]


def _keys(scope: str, limits: list[tuple[str, int]]) -> list[tuple[str, int]]:
    window = int(time.time() // WINDOW_S)
    return [
        (f"ludus:rl:{scope}:{ident}:{window}", limit)
        for ident, limit in limits
        if ident and limit > 0
    ]


def _counted(pipe: Any, keys: list[tuple[str, int]]) -> Any:
    """Queue the count of one event on each window key (a redis-py pipeline, sync or async)."""
    for key, _ in keys:
        pipe.incr(key)
        pipe.expire(key, WINDOW_S * 2)
    return pipe


def _within(results: list[Any], keys: list[tuple[str, int]]) -> bool:
    counts = results[0::2]
    return all(count <= limit for count, (_, limit) in zip(counts, keys, strict=True))


def hit(scope: str, limits: list[tuple[str, int]]) -> bool:
    """Count one event against each (identity, limit) of `scope`; False when any limit is passed.
    Identities that are empty are skipped; a limit of 0 or less means no limit."""
    keys = _keys(scope, limits)
    if not keys:
        return True
    return _within(_counted(_client().pipeline(transaction=False), keys).execute(), keys)


_async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def async_client() -> Any:
    """A redis.asyncio client on the cache's Redis, one per event loop (its connections belong to
    the loop that opened them)."""
    import asyncio

    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        from django.conf import settings

        client = _async_clients[loop] = redis.asyncio.Redis.from_url(
            settings.CACHES["default"]["LOCATION"]
        )
    return client


async def async_client_close() -> None:
    """Close the running loop's async client (tests; a server process just exits)."""
    import asyncio

    client = _async_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def ahit(scope: str, limits: list[tuple[str, int]]) -> bool:
    """hit() on an event loop: the same keys and windows, one pipelined round trip."""
    keys = _keys(scope, limits)
    if not keys:
        return True
    return _within(await _counted(async_client().pipeline(transaction=False), keys).execute(), keys)
