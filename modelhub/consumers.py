"""Websocket consumer that streams generations to browsers, replayably.

Protocol (JSON messages):
  client → {"type": "subscribe", "generations": [{"id": <uuid>, "after": <seq>}, ...]}
  client → {"type": "stop", "id": <uuid>}
  server → frames from modelhub.streams (delta, done, error, cancelled, snapshot), and
           {"type": "denied", "id": ...} for a generation this socket may not watch.

Every subscribe and stop is checked against the socket's user or session (its owner), not only the
connection. Frames never carry a model's identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from modelhub import services, streams
from modelhub.models import Generation
from modelhub.selectors import Viewer, generation_for_viewer

MAX_SUBSCRIPTIONS = 8
BLOCK_MS = 10_000

_clients: dict[int, aioredis.Redis] = {}


def _redis() -> aioredis.Redis:
    """One async Redis client per event loop (connections belong to the loop that made them)."""
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None:
        # XREAD blocks up to BLOCK_MS: the socket timeout must be longer (redis-py 8 defaults to 5 s).
        client = aioredis.Redis.from_url(
            settings.REDIS_URL, max_connections=5000, socket_timeout=BLOCK_MS / 1000 + 10
        )
        _clients[loop_id] = client
    return client


class GenerationConsumer(AsyncJsonWebsocketConsumer):
    # Tokens come from Redis Streams, not the channel layer (whose group_send drops messages past
    # its capacity): an alias with no configured layer gives this consumer no layer at all.
    channel_layer_alias = "no-channel-layer"
    async def connect(self) -> None:
        self.positions: dict[str, int] = {}
        self.finished: set[str] = set()
        self.reader: asyncio.Task[None] | None = None
        self.redis = _redis()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        self.reader = None

    def _viewer(self) -> Viewer:
        user = self.scope.get("user")
        session = self.scope.get("session")
        return Viewer(
            user_id=user.pk if user is not None and user.is_authenticated else None,
            session_key=session.session_key if session is not None else None,
            is_staff=bool(user is not None and user.is_authenticated and user.is_staff),
        )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send_json({"type": "invalid", "message": "messages must be JSON objects"})
            return
        kind = content.get("type")
        if kind == "subscribe":
            await self._subscribe(content.get("generations"))
        elif kind == "stop":
            await self._stop(content.get("id"))
        else:
            await self.send_json({"type": "invalid", "message": f"unknown message type {kind!r}"})

    async def _subscribe(self, items: Any) -> None:
        if not isinstance(items, list) or not items or len(items) > MAX_SUBSCRIPTIONS:
            await self.send_json(
                {"type": "invalid", "message": "generations must be a list of 1-8 items"}
            )
            return
        viewer = self._viewer()
        await self._stop_reader()  # it may be blocked on the old set of streams
        for item in items:
            gid = str(item.get("id", "")) if isinstance(item, dict) else ""
            after = item.get("after", 0) if isinstance(item, dict) else 0
            if not isinstance(after, int) or after < 0:
                after = 0
            generation = await database_sync_to_async(generation_for_viewer)(
                generation_id=gid, viewer=viewer
            )
            if generation is None:
                await self.send_json({"type": "denied", "id": gid})
                continue
            gid = str(generation.id)
            await self._catch_up(generation, after)
        if self.positions:
            self.reader = asyncio.create_task(self._read_forever())

    async def _catch_up(self, generation: Generation, after: int) -> None:
        """Send what is stored after `after`; fall back to PostgreSQL when the stream expired."""
        gid = str(generation.id)
        entries = await self.redis.xrange(
            streams.events_key(gid), min=f"({streams.entry_id(after)}" if after else "-"
        )
        if not entries and generation.is_finished and generation.last_seq > after:
            # The replay stream expired; the final state lives in PostgreSQL.
            await self.send_json(
                {
                    "type": "snapshot",
                    "id": gid,
                    "seq": generation.last_seq - 1,
                    "text": generation.text,
                }
            )
            await self.send_json(_terminal_from_row(generation))
            self.finished.add(gid)
            return
        position = after
        for entry_id, fields in entries:
            frame = streams.decode(gid, entry_id, fields)
            position = frame["seq"]
            await self.send(text_data=json.dumps(frame))
            if frame["type"] in streams.TERMINAL_TYPES:
                self.finished.add(gid)
        if gid not in self.finished:
            self.positions[gid] = position

    async def _read_forever(self) -> None:
        while self.positions:
            keys = {
                streams.events_key(gid): streams.entry_id(seq)
                for gid, seq in self.positions.items()
            }
            response = await self.redis.xread(keys, block=BLOCK_MS)
            for key, entries in response or []:
                gid = (key.decode() if isinstance(key, bytes) else key).split(":")[2]
                for entry_id, fields in entries:
                    frame = streams.decode(gid, entry_id, fields)
                    if frame["seq"] <= self.positions.get(gid, 0):
                        continue
                    self.positions[gid] = frame["seq"]
                    await self.send(text_data=json.dumps(frame))
                    if frame["type"] in streams.TERMINAL_TYPES:
                        self.positions.pop(gid, None)
                        self.finished.add(gid)
                        break

    async def _stop(self, gid: Any) -> None:
        generation = await database_sync_to_async(generation_for_viewer)(
            generation_id=str(gid), viewer=self._viewer()
        )
        if generation is None:
            await self.send_json({"type": "denied", "id": str(gid)})
            return
        await database_sync_to_async(services.generation_stop)(generation=generation)


def _terminal_from_row(generation: Generation) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "done" if generation.status == "done" else generation.status,
        "id": str(generation.id),
        "seq": generation.last_seq,
        "finish_reason": generation.finish_reason,
    }
    if generation.error:
        frame["message"] = generation.error
    return frame
