"""One Redis reader per web process for every generation stream its sockets watch.

A socket per XREAD would cost one Redis round trip per frame per socket. The hub issues a single
blocking XREAD over all watched streams and fans entries out to subscriber queues, so one round
trip carries every stream that moved during a coalescing tick. When a socket starts watching a new
stream, the hub's blocked XREAD is interrupted with CLIENT UNBLOCK so the new stream is read at
once rather than after the block times out.

Ordering contract (what makes replay gapless): a subscriber registers its queue *before* reading
the stored entries with XRANGE, and drops any frame whose seq it has already sent. Every entry
after its starting point is therefore delivered by XRANGE or by the hub, possibly both, never
neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis

from modelhub import streams

log = logging.getLogger(__name__)

BLOCK_MS = 5_000


class StreamHub:
    def __init__(self, url: str) -> None:
        self.url = url
        self.reader_client = aioredis.Redis.from_url(
            url, socket_timeout=BLOCK_MS / 1000 + 10, max_connections=1
        )
        # Everything else on this loop (replays, CLIENT UNBLOCK) shares a few ordinary connections:
        # a burst of sockets waits its turn for one instead of opening hundreds (each new
        # connection costs a handshake and, in redis-py, a read of its own package metadata).
        self.client = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                url, socket_timeout=10, max_connections=16, timeout=20
            )
        )
        self.positions: dict[str, str] = {}  # stream key -> last entry id read by the hub
        self.subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self.task: asyncio.Task[None] | None = None
        self.reader_id: int | None = None
        self.blocked = False
        self.reading: frozenset[str] = frozenset()  # the keys of the XREAD in flight
        self.unblocking = False  # a CLIENT UNBLOCK of the XREAD in flight is under way
        self.changed = asyncio.Event()

    async def subscribe(
        self, generation_id: str, after: int, queue: asyncio.Queue[dict[str, Any]]
    ) -> bool:
        """Deliver the stream's entries after `after` to `queue` from now on. Returns True when the
        hub starts reading this stream at `after` for this subscriber, so it delivers every entry
        already stored too; False when the hub was already further on (the caller replays what
        is stored)."""
        key = streams.events_key(generation_id)
        self.subscribers[key].add(queue)
        fresh = key not in self.positions
        if fresh:
            self.positions[key] = streams.entry_id(after) if after else "0-0"
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        elif fresh:
            await self._wake(key)
        return fresh

    def unsubscribe(self, generation_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        key = streams.events_key(generation_id)
        subs = self.subscribers.get(key)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                self.subscribers.pop(key, None)
                self.positions.pop(key, None)

    async def _wake(self, key: str) -> None:
        """Interrupt the blocked XREAD so it is reissued with `key` among its streams.

        One CLIENT UNBLOCK per XREAD: subscriptions that arrive while one is under way are in the
        reissued XREAD. An UNBLOCK that reaches Redis before the XREAD it means to interrupt
        (they travel on different connections) finds nothing blocked, so it is repeated until the
        XREAD is interrupted, has returned, or already reads `key`."""
        self.changed.set()
        if self.unblocking:
            return
        self.unblocking = True
        try:
            for _ in range(1000):
                if not self.blocked or key in self.reading or self.reader_id is None:
                    break
                if await self.client.client_unblock(self.reader_id):
                    return  # the reader clears `unblocking` when it reissues
                await asyncio.sleep(0.001)
        except Exception:  # Redis is down: the reader's own error handling takes over
            log.warning("could not interrupt the stream hub's XREAD", exc_info=True)
        self.unblocking = False

    async def _run(self) -> None:
        conn = await self.reader_client.connection_pool.get_connection()
        try:
            await conn.send_command("CLIENT", "ID")
            self.reader_id = int(await conn.read_response())
            while True:
                if not self.positions:
                    self.changed.clear()
                    await self.changed.wait()
                    continue
                keys = dict(self.positions)
                args: list[Any] = [
                    "XREAD",
                    "BLOCK",
                    BLOCK_MS,
                    "STREAMS",
                    *keys.keys(),
                    *keys.values(),
                ]
                self.reading = frozenset(keys)
                self.unblocking = False
                self.blocked = True
                try:
                    await conn.send_command(*args)
                    response = await conn.read_response()
                finally:
                    self.blocked = False
                for raw_key, entries in _pairs(response):
                    key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                    generation_id = key.split(":")[2]
                    if key not in self.positions:
                        continue
                    for entry_id, fields in entries:
                        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                        self.positions[key] = eid
                        frame = streams.decode(generation_id, eid, _fields(fields))
                        for queue in list(self.subscribers.get(key, ())):
                            queue.put_nowait(frame)
                        if frame["type"] in streams.TERMINAL_TYPES:
                            # Nothing follows a terminal frame; stop reading this stream.
                            self.positions.pop(key, None)
        except Exception:
            log.exception("stream hub reader failed; it restarts on the next subscription")
            await conn.disconnect()
            raise
        finally:
            await self.reader_client.connection_pool.release(conn)


def _pairs(response: Any) -> list[tuple[Any, list[tuple[Any, Any]]]]:
    """XREAD's raw reply: a map {key: entries} (RESP3, redis-py 8's default) or a list of
    [key, entries] pairs (RESP2); entries are [[id, [field, value, ...]], ...]."""
    if not response:
        return []
    if isinstance(response, dict):
        return list(response.items())
    return [(item[0], item[1]) for item in response]


def _fields(fields: Any) -> dict[Any, Any]:
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=False))


_hubs: dict[int, StreamHub] = {}


def hub_for_loop(url: str) -> StreamHub:
    """One hub per event loop (Redis connections belong to the loop that opened them)."""
    loop_id = id(asyncio.get_running_loop())
    hub = _hubs.get(loop_id)
    if hub is None:
        hub = StreamHub(url)
        _hubs[loop_id] = hub
    return hub
