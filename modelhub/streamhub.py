"""One Redis reader per web process for every generation stream its sockets watch.

Workers append every frame to its generation's stream and, in the same script call, to one
firehose stream (modelhub.streams). The hub issues one blocking XREAD of the firehose and hands
the frames of watched generations to their subscribers' queues. One round trip carries every
generation that moved during a coalescing tick, and the read costs Redis and this process the
same whether the process watches one stream or a thousand. (Reading every watched stream with
one XREAD cost both sides in proportion to the streams watched, at every tick, and a new stream
meant interrupting the blocked read.) Frames of generations nobody here watches are skipped
without being parsed.

Ordering contract (what makes replay gapless): `subscribe` returns once the hub reads the firehose
from a position taken before the call; every frame written after that reaches the queue. The
subscriber then reads what is stored with XRANGE and drops any frame whose seq it has already
sent. Every entry after its starting point is therefore delivered by XRANGE or by the hub,
possibly both, never neither.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis

from modelhub import streams

log = logging.getLogger(__name__)

BLOCK_MS = 5_000
READER_NAME = "ludus-stream-hub"


class StreamHub:
    def __init__(self, url: str) -> None:
        self.url = url
        self.reader_client = aioredis.Redis.from_url(
            url, socket_timeout=BLOCK_MS / 1000 + 10, max_connections=1
        )
        # Everything else on this loop (replays) shares a few ordinary connections: a burst of
        # sockets waits its turn for one instead of opening hundreds (each new connection costs a
        # handshake and, in redis-py, a read of its own package metadata).
        self.client = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                url, socket_timeout=10, max_connections=16, timeout=20
            )
        )
        self.subscribers: dict[str, set[asyncio.Queue[streams.Wire | None]]] = defaultdict(set)
        # The reader, while one runs, and what it resolves once it holds a firehose position.
        self.task: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] | None = None
        self.reader_id: int | None = None  # the reading connection's CLIENT ID

    async def subscribe(
        self, generation_id: str, queue: asyncio.Queue[streams.Wire | None]
    ) -> None:
        """Deliver the generation's frames written from now on to `queue` (see the contract).
        Raises when the firehose cannot be read (Redis is down)."""
        self.subscribers[generation_id].add(queue)
        if self.task is None or self.ready is None:
            self.ready = asyncio.get_running_loop().create_future()
            self.task = asyncio.create_task(self._run(self.ready))
        ready = self.ready
        try:
            await asyncio.shield(ready)
        except Exception:
            self.unsubscribe(generation_id, queue)
            raise

    async def replay(self, positions: list[tuple[str, int]]) -> list[list[tuple[Any, Any]]]:
        """What each generation's stream holds after its sequence number, for `(generation id,
        after)` pairs: the XRANGEs sent together on one connection and their raw replies read back
        (entries of [id, [field, value, ...]]). The client's own command path cost a socket's
        subscribe twice the CPU, most of it in redis-py rather than in Redis."""
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            commands = [
                (
                    "XRANGE",
                    streams.events_key(gid),
                    f"({streams.entry_id(after)}" if after else "-",
                    "+",
                )
                for gid, after in positions
            ]
            await conn.send_packed_command(conn.pack_commands(commands))
            return [list(await conn.read_response() or []) for _ in commands]
        except BaseException:
            await conn.disconnect()  # replies left unread must not reach the next user
            raise
        finally:
            await pool.release(conn)

    def unsubscribe(self, generation_id: str, queue: asyncio.Queue[streams.Wire | None]) -> None:
        subs = self.subscribers.get(generation_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                self.subscribers.pop(generation_id, None)

    async def _run(self, ready: asyncio.Future[None]) -> None:
        """Read the firehose while anyone subscribes; a later subscription starts a new reader.
        `self.task` is cleared the moment this reader stops delivering, before any await, so no
        subscription can count on a reader that is on its way out."""
        conn = None
        try:
            conn = await self.reader_client.connection_pool.get_connection()
            await conn.send_command("CLIENT", "SETNAME", READER_NAME)  # to find it in CLIENT LIST
            await conn.read_response()
            await conn.send_command("CLIENT", "ID")
            self.reader_id = int(await conn.read_response())
            # A concrete position, not "$": an XRANGE made once `ready` resolves must not see a
            # frame that this reader skips.
            await conn.send_command("XREVRANGE", streams.FIREHOSE_KEY, "+", "-", "COUNT", 1)
            last = await conn.read_response()
            position = _id(last[0][0]) if last else "0-0"
            ready.set_result(None)
            while self.subscribers:
                await conn.send_command(
                    "XREAD", "BLOCK", BLOCK_MS, "STREAMS", streams.FIREHOSE_KEY, position
                )
                response = await conn.read_response()
                for _key, entries in _pairs(response):
                    for entry_id, fields in entries:
                        position = _id(entry_id)
                        self._deliver(fields)
            self.task = None
        except BaseException as exc:
            self.task = None
            if not ready.done():
                ready.set_exception(ConnectionError(f"cannot read the stream firehose: {exc}"))
            # Frames written while nobody reads are missed: every subscriber is told to drop its
            # socket, whose browser reconnects and replays from its last frame.
            for queues in self.subscribers.values():
                for queue in queues:
                    queue.put_nowait(None)
            self.subscribers.clear()
            if conn is not None:
                await conn.disconnect()
            if not isinstance(exc, Exception):
                raise
            log.warning("stream hub reader failed (%s); sockets reconnect and replay", exc)
        finally:
            if conn is not None:
                await self.reader_client.connection_pool.release(conn)

    def _deliver(self, fields: Any) -> None:
        subscribers = self.subscribers
        for raw_id, value in streams.field_pairs(fields):
            generation_id = raw_id.decode()
            queues = subscribers.get(generation_id)
            if not queues:
                continue
            space = value.index(b" ")
            frame = streams.wire(generation_id, int(value[:space]), value[space + 1 :])
            for queue in list(queues):
                queue.put_nowait(frame)


def _id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _pairs(response: Any) -> list[tuple[Any, list[tuple[Any, Any]]]]:
    """XREAD's raw reply: a map {key: entries} (RESP3, redis-py 8's default) or a list of
    [key, entries] pairs (RESP2); entries are [[id, [field, value, ...]], ...]."""
    if not response:
        return []
    if isinstance(response, dict):
        return list(response.items())
    return [(item[0], item[1]) for item in response]


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamHub] = weakref.WeakKeyDictionary()


def hub_for_loop(url: str) -> StreamHub:
    """One hub per event loop (Redis connections belong to the loop that opened them). Keyed by the
    loop itself, not its id, which a later loop may reuse."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = StreamHub(url)
    return hub
