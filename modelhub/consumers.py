"""Websocket consumer that streams generations to browsers, replayably.

Protocol (JSON messages):
  client → {"type": "subscribe", "generations": [{"id": <uuid>, "after": <seq>}, ...]}
  client → {"type": "stop", "id": <uuid>}
  server → frames from modelhub.streams (delta, done, error, cancelled, snapshot), and
           {"type": "denied", "id": ...} for a generation this socket may not watch.
           A message is one frame, or an array of frames in order when several are ready at once
           (a battle's two answers moved in the same tick, a replay): one websocket message for
           the lot costs the server and the browser one send and one event instead of several.

Every subscribe and stop is checked against the socket's user or session (its owner), not only the
connection. Frames never carry a model's identity.

A client message is a few hundred bytes (MAX_SUBSCRIPTIONS entries at most): one longer than
MAX_MESSAGE_BYTES closes the socket with 1009 before any JSON is parsed, so no client can make the
event loop that serves every socket parse megabytes. The server's own limit (uvicorn's
--ws-max-size in the Procfile) is the same figure, and refuses larger frames before they are
buffered whole.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from modelhub import services, streams
from modelhub.models import TERMINAL_STATUSES, Generation
from modelhub.selectors import Viewer, generation_for_viewer
from modelhub.streamhub import hub_for_loop
from modelhub.wsauth import resolve_user

MAX_SUBSCRIPTIONS = 8  # generations asked for per socket, refused ones included
MAX_MESSAGE_BYTES = 16 * 1024
MESSAGE_TOO_BIG = 1009  # the websocket close code for a message too big to process
MAX_BATCH = 500  # frames per message at most (a long replay goes in several)
# After this long without a frame, a socket asks PostgreSQL whether the answers it still waits
# for have ended: an end frame that never reached Redis (Redis was down as the answer finished)
# must not leave the page waiting forever. The row, not the stream, is the record of the end.
QUIET_CHECK_S = 10.0
END_WRITE_GRACE_S = 2.0


class GenerationConsumer(AsyncJsonWebsocketConsumer):
    """Frames come from Redis Streams through the stream hub, not a channel layer (whose group_send
    drops messages past its capacity): settings configure none, so Channels gives this consumer
    none (`self.channel_layer` is None)."""

    async def connect(self) -> None:
        self.sent: dict[str, int] = {}  # generation id -> last seq sent on this socket
        # Every generation id asked for, denied ones too: each costs a lookup, so a socket may ask
        # for MAX_SUBSCRIPTIONS in all, not MAX_SUBSCRIPTIONS more after every refusal.
        self.asked: set[str] = set()
        self.ended: set[str] = set()  # generations whose end frame this socket has sent
        # generation id -> frames from the hub held back while that generation's replay is sent
        self.held: dict[str, list[streams.Wire]] = {}
        self.queue: asyncio.Queue[streams.Wire | None] = asyncio.Queue()
        self.pump: asyncio.Task[None] | None = None
        self.hub = hub_for_loop(settings.REDIS_URL)
        await self.accept()

    async def dispatch(self, message: Any) -> None:
        """Channels' dispatch without its hop to a thread, on every message, to close stale database
        connections: this consumer reaches the database only through database_sync_to_async, which
        does that in its own thread. (The hop was a tenth of the web process's CPU while 256
        sockets opened at once.)"""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: Any) -> None:
        """Channels' websocket_disconnect without its thread hop to close database connections
        (see dispatch) and without channel-layer groups (this consumer has no layer)."""
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        for gid in self.sent:
            self.hub.unsubscribe(gid, self.queue)
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pump

    async def _viewer(self) -> Viewer:
        # The user is resolved only here, for subscriptions without a token (see config.asgi).
        user = await resolve_user(self.scope)
        session = self.scope.get("session")
        return Viewer(
            user_id=user.pk if user is not None and user.is_authenticated else None,
            session_key=session.session_key if session is not None else None,
            is_staff=bool(user is not None and user.is_authenticated and user.is_staff),
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # A str's length in characters is at most its UTF-8 length in bytes: checked without
        # encoding it.
        size = len(text_data) if text_data is not None else len(bytes_data or b"")
        if size > MAX_MESSAGE_BYTES:
            await self.close(code=MESSAGE_TOO_BIG)
            return
        try:
            content = await self.decode_json(text_data) if text_data is not None else None
        except ValueError:  # not JSON: answered like any other message this socket cannot take
            content = None
        await self.receive_json(content)

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
        if not isinstance(items, list) or not 0 < len(items) <= MAX_SUBSCRIPTIONS:
            items = []
        asked = self.asked | {_asked_id(item) for item in items}
        if not items or len(asked) > MAX_SUBSCRIPTIONS:
            await self.send_json(
                {
                    "type": "invalid",
                    "message": f"subscribe to 1-{MAX_SUBSCRIPTIONS} generations per socket",
                }
            )
            return
        self.asked = asked
        accepted: list[tuple[str, int, Generation | None, bool]] = []
        for item in items:
            gid = str(item.get("id", "")) if isinstance(item, dict) else ""
            after = item.get("after", 0) if isinstance(item, dict) else 0
            token = item.get("token") if isinstance(item, dict) else None
            if not isinstance(after, int) or after < 0:
                after = 0
            generation: Generation | None = None
            age = streams.token_age(token, gid) if isinstance(token, str) else None
            if age is None:
                generation = await database_sync_to_async(generation_for_viewer)(
                    generation_id=gid, viewer=await self._viewer()
                )
                if generation is None:
                    await self.send_json({"type": "denied", "id": gid})
                    continue
                gid = str(generation.id)
            if gid in self.sent:
                continue
            self.sent[gid] = after
            # A stream lives until FINISHED_TTL_S after its end, and a generation ends after its
            # token was issued: with a younger token an empty stream means "not started yet".
            may_have_expired = age is None or age > streams.FINISHED_TTL_S - 60
            accepted.append((gid, after, generation, may_have_expired))
        if not accepted:
            return
        if self.pump is None:
            self.pump = asyncio.create_task(self._pump())
        # Register with the hub first, then replay what is stored (see streamhub's contract).
        # What the hub delivers meanwhile waits, in order, until the replay has been sent.
        for gid, *_ in accepted:
            self.held[gid] = []
            await self.hub.subscribe(gid, self.queue)
        stored = await self.hub.replay([(gid, after) for gid, after, _, _ in accepted])
        replayed: list[streams.Wire] = []
        for (gid, after, generation, may_have_expired), entries in zip(
            accepted, stored, strict=True
        ):
            replayed += await self._replayed(gid, after, entries, generation, may_have_expired)
        await self._send(replayed)
        for gid, *_ in accepted:
            held = self.held[gid]
            while held:
                batch = held[:]
                held.clear()
                await self._send(batch)
            del self.held[gid]

    async def _replayed(
        self,
        gid: str,
        after: int,
        entries: list[tuple[Any, Any]],
        generation: Generation | None,
        may_have_expired: bool,
    ) -> list[streams.Wire]:
        """The frames to replay from what the stream holds after `after`; from PostgreSQL when the
        stream expired."""
        if not entries and may_have_expired and generation is None:
            generation = await database_sync_to_async(_generation)(gid)
        if (
            not entries
            and generation is not None
            and generation.is_finished
            and generation.last_seq > after
        ):
            return _from_row(generation)  # the replay stream expired: the end is in PostgreSQL
        return [streams.wire_entry(gid, entry_id, fields) for entry_id, fields in entries]

    async def _send(self, frames: list[streams.Wire]) -> None:
        """Send the frames not sent yet, in order, in one message (at most MAX_BATCH each)."""
        texts: list[str] = []
        for frame in frames:
            gid = frame.generation_id
            if frame.seq <= self.sent.get(gid, 0):
                continue  # already sent by the replay or the hub
            self.sent[gid] = frame.seq
            texts.append(frame.text)
            if frame.terminal:
                self.ended.add(gid)
                self.hub.unsubscribe(gid, self.queue)
        for start in range(0, len(texts), MAX_BATCH):
            part = texts[start : start + MAX_BATCH]
            await self.send(text_data=part[0] if len(part) == 1 else f"[{','.join(part)}]")

    async def _pump(self) -> None:
        while True:
            try:
                ready = [await asyncio.wait_for(self.queue.get(), timeout=QUIET_CHECK_S)]
            except TimeoutError:
                await self._send(await self._ended_quietly())
                continue
            while not self.queue.empty():  # whatever the hub delivered meanwhile goes along
                ready.append(self.queue.get_nowait())
            frames: list[streams.Wire] = []
            for frame in ready:
                if frame is None:  # the hub stopped reading: the browser reconnects and replays
                    await self._send(frames)
                    await self.close(code=1011)
                    return
                held = self.held.get(frame.generation_id)
                if held is not None:
                    held.append(frame)
                else:
                    frames.append(frame)
            await self._send(frames)

    async def _ended_quietly(self) -> list[streams.Wire]:
        """The end of each answer this socket still waits for that ended in PostgreSQL at least
        END_WRITE_GRACE_S ago (the row is written just before the stream's end frame): what its
        stream holds past what was sent when that includes the end, else (the end frame never
        reached Redis) a snapshot and the end from the row."""
        waiting = [gid for gid in self.sent if gid not in self.ended and gid not in self.held]
        if not waiting:
            return []
        rows = await database_sync_to_async(_finished_generations)(waiting, END_WRITE_GRACE_S)
        rows = [g for g in rows if g.last_seq > self.sent.get(str(g.id), 0)]
        if not rows:
            return []
        stored = await self.hub.replay([(str(g.id), self.sent[str(g.id)]) for g in rows])
        frames: list[streams.Wire] = []
        for generation, entries in zip(rows, stored, strict=True):
            gid = str(generation.id)
            wires = [streams.wire_entry(gid, entry_id, fields) for entry_id, fields in entries]
            frames += wires if any(w.terminal for w in wires) else _from_row(generation)
        return frames

    async def _stop(self, gid: Any) -> None:
        generation = await database_sync_to_async(generation_for_viewer)(
            generation_id=str(gid), viewer=await self._viewer()
        )
        if generation is None:
            await self.send_json({"type": "denied", "id": str(gid)})
            return
        await database_sync_to_async(services.generation_stop)(generation=generation)


def _asked_id(item: Any) -> str:
    return str(item.get("id", "")) if isinstance(item, dict) else ""


def _generation(gid: str) -> Generation | None:
    return Generation.objects.filter(id=gid).first()


def _finished_generations(ids: list[str], before_s: float) -> list[Generation]:
    ended_before = timezone.now() - timedelta(seconds=before_s)
    return list(
        Generation.objects.filter(
            id__in=ids, status__in=TERMINAL_STATUSES, finished_at__lt=ended_before
        )
    )


def _from_row(generation: Generation) -> list[streams.Wire]:
    """A finished answer as PostgreSQL holds it: its whole text as a snapshot, then its end."""
    gid = str(generation.id)
    snapshot = {"type": "snapshot", "id": gid, "seq": generation.last_seq - 1}
    return [
        streams.wire_frame(snapshot | {"text": generation.text}),
        streams.wire_frame(_terminal_from_row(generation)),
    ]


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
