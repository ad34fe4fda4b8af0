"""The worker side of the serving pool: reading upstreams and coalescing deltas into the
replayable Redis streams.

A Celery worker runs many generations at once. Each Celery task (a thread of the worker's thread
pool) claims its generation and stores the outcome in PostgreSQL, but the upstream read itself
runs on the process's one `StreamRunner` event loop: hundreds of OS threads each waking per token
spent the worker's CPU on GIL hand-offs, while one loop reads every stream with no switching. The
task thread waits on its read without holding the GIL. The read appends deltas to an `Outbox`; one
`Flusher` thread per process writes every outbox that has something new
with one Redis script call every ~50 ms (and at once for a first token, so time-to-first-token gains
nothing from coalescing). One writer per process keeps each stream's sequence numbers in order, and
one round trip per tick keeps Redis load flat however many streams run. The same call checks the
stop flags of all active generations. (Their heartbeats and slot leases are renewed by the run's
heartbeat thread, modelhub.services.run.Heartbeat, from `Flusher.open_boxes`.)

This module touches Redis and upstreams only: what goes to PostgreSQL is written by the services.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import redis
from django.conf import settings

from modelhub import client, redis_clients, streams

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Outbox:
    generation_id: str
    seq: int = 0
    model_id: int = 0  # whose slot it holds (modelhub.slots), renewed with its heartbeat
    pending: list[str] = field(default_factory=list)
    urgent: bool = False
    cancelled: bool = False
    on_cancel: Callable[[], None] | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class Flusher:
    def __init__(self, client: redis.Redis, interval_s: float) -> None:
        self.client = client
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._outboxes: dict[str, Outbox] = {}
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ludus-flusher", daemon=True)
        self._thread.start()

    # -- called from generation threads -------------------------------------------------------
    def open(self, generation_id: str, start_seq: int = 0, model_id: int = 0) -> Outbox:
        box = Outbox(generation_id=generation_id, seq=start_seq, model_id=model_id)
        with self._lock:
            self._outboxes[generation_id] = box
        return box

    def open_boxes(self) -> list[Outbox]:
        """The outboxes open now: the generations this process streams."""
        with self._lock:
            return list(self._outboxes.values())

    def push(self, box: Outbox, text: str, urgent: bool = False) -> None:
        with self._lock:
            box.pending.append(text)
            if urgent:
                box.urgent = True
        if urgent:
            self._wake.set()

    def push_frame(self, box: Outbox, frame: dict[str, Any]) -> None:
        """Write a frame other than a delta (a tool call, its result) now, after the text pending
        before it. Blocks on Redis: call it from a thread, not the stream loop."""
        with self._tick_lock:  # no tick is half-way through writing this stream
            with self._lock:
                entries: list[tuple[str, int, str | dict[str, Any]]] = []
                if box.pending:
                    entries.append((box.generation_id, box.next_seq(), "".join(box.pending)))
                    box.pending.clear()
                    box.urgent = False
                entries.append((box.generation_id, box.next_seq(), frame))
            streams.add_many(self.client, entries)

    def take(self, box: Outbox) -> tuple[int, str] | None:
        """Stop tracking this generation and hand back its pending text with the next sequence
        number, for the caller to write with the terminal frame (streams.add_terminal), or None
        when nothing is pending. After this returns the caller owns the stream: no tick is half-way
        through writing it. Taking a box that is closed already takes no tick lock (callers may
        hold a database connection, and a tick may be waiting for one)."""
        with self._lock:
            if box.generation_id not in self._outboxes and not box.pending:
                return None
        # The tick lock first: no tick is half-way through writing this stream.
        with self._tick_lock, self._lock:
            self._outboxes.pop(box.generation_id, None)
            text = "".join(box.pending)
            box.pending.clear()
            return (box.next_seq(), text) if text else None

    def close(self, box: Outbox) -> None:
        """`take`, writing what was pending: after this returns the caller owns the stream again
        (to write the terminal frame at `box.seq + 1`). Closing a closed box is a no-op."""
        pending = self.take(box)
        if pending is not None:
            streams.add_many(self.client, [(box.generation_id, *pending)])

    # -- the flusher thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush_once()
            except Exception:  # keep flushing whatever one bad tick did
                log.exception("flusher tick failed")
                time.sleep(0.1)

    def flush_once(self) -> None:
        with self._tick_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        """Write every pending delta, check the stop flags."""
        with self._lock:
            boxes = list(self._outboxes.values())
            batch: list[tuple[Outbox, int, str]] = []
            for box in boxes:
                if box.pending:
                    batch.append((box, box.next_seq(), "".join(box.pending)))
                    box.pending.clear()
                    box.urgent = False
        if not boxes:
            return
        deltas = [(box.generation_id, seq, text) for box, seq, text in batch]
        try:
            stops, failures = streams.add_many(
                self.client, deltas, watch=[box.generation_id for box in boxes]
            )
        except redis.RedisError as exc:
            # Redis unreachable: give the text and the sequence numbers back, so the next tick
            # writes them with no gap (a write that did land is refused then as a duplicate).
            log.warning("stream write failed: %s", exc)
            with self._lock:
                for box, seq, text in batch:
                    box.pending.insert(0, text)
                    box.seq = seq - 1
            return
        for failure in failures:
            if b"equal or smaller" not in failure:  # a redelivered delta, refused: fine
                log.warning("stream write failed: %s", failure.decode(errors="replace"))
        if stops:
            pipe = self.client.pipeline(transaction=False)
            for box in boxes:
                pipe.exists(streams.stop_key(box.generation_id))
            for box, stop in zip(boxes, pipe.execute(raise_on_error=False), strict=True):
                if stop and not isinstance(stop, Exception):
                    self._cancel(box)

    @staticmethod
    def _cancel(box: Outbox) -> None:
        if box.cancelled:
            return
        box.cancelled = True
        if box.on_cancel is not None:
            try:
                box.on_cancel()
            except Exception:
                log.exception("cancel callback failed")


_flusher: Flusher | None = None
_flusher_lock = threading.Lock()


def redis_client() -> redis.Redis:
    return redis_clients.client()


def flusher() -> Flusher:
    global _flusher
    with _flusher_lock:
        if _flusher is None:
            _flusher = Flusher(redis_client(), settings.GENERATION_COALESCE_MS / 1000.0)
        return _flusher


class StreamRunner:
    """One event loop thread per worker process that runs the upstream reads of all its generations.

    A Celery task thread `submit`s its reads and waits on their futures. The outbox's `on_cancel`
    (called by the flusher when a stop flag appears) cancels the read's task, which closes the
    upstream response; the coroutine sees `box.cancelled` and returns normally.
    """

    def __init__(self) -> None:
        try:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
            self.loop = asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(target=self._run, name="ludus-streams", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The loop's HTTP session to upstreams (made on the loop, used only from it)."""
        if self._session is None:
            self._session = client.session()
        return self._session

    def warm(self) -> None:
        """Make the HTTP session now, on the loop, instead of during the first generation."""

        async def make() -> None:
            _ = self.http

        asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    def submit(
        self, box: Outbox, make: Callable[[], Coroutine[Any, Any, T]]
    ) -> concurrent.futures.Future[T]:
        """Run the coroutine on the loop; cancelling the returned future cancels it."""

        async def main() -> T:
            task = asyncio.current_task()
            assert task is not None

            def cancel() -> None:
                self.loop.call_soon_threadsafe(task.cancel)

            box.on_cancel = cancel
            try:
                return await make()
            finally:
                box.on_cancel = None

        return asyncio.run_coroutine_threadsafe(main(), self.loop)


_runner: StreamRunner | None = None


def runner() -> StreamRunner:
    global _runner
    with _flusher_lock:
        if _runner is None:
            _runner = StreamRunner()
        return _runner
