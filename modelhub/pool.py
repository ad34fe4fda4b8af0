"""The worker side of the serving pool: coalescing deltas into the replayable Redis streams.

A Celery worker runs many generations at once on a thread pool. Each generation thread appends
deltas to its `Outbox`; one `Flusher` thread per process writes every outbox that has something new
in a single Redis pipeline every ~50 ms (and at once for a first token, so time-to-first-token gains
nothing from coalescing). One writer per process keeps each stream's sequence numbers in order, and
one round trip per tick keeps Redis load flat however many streams run. The same tick checks the
stop flags of all active generations and refreshes their heartbeats in PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from modelhub import streams

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 2.0


@dataclass
class Outbox:
    generation_id: str
    seq: int = 0
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
        self._last_heartbeat = 0.0
        self._thread = threading.Thread(target=self._run, name="ludus-flusher", daemon=True)
        self._thread.start()

    # -- called from generation threads -------------------------------------------------------
    def open(self, generation_id: str, start_seq: int = 0) -> Outbox:
        box = Outbox(generation_id=generation_id, seq=start_seq)
        with self._lock:
            self._outboxes[generation_id] = box
        return box

    def push(self, box: Outbox, text: str, urgent: bool = False) -> None:
        with self._lock:
            box.pending.append(text)
            if urgent:
                box.urgent = True
        if urgent:
            self._wake.set()

    def close(self, box: Outbox) -> None:
        """Write what is pending for this generation and stop tracking it. After this returns the
        caller owns the stream again (to write the terminal frame at `box.seq + 1`)."""
        with self._tick_lock:  # no tick is half-way through writing this stream
            with self._lock:
                self._outboxes.pop(box.generation_id, None)
                text = "".join(box.pending)
                box.pending.clear()
                seq = box.next_seq() if text else 0
            if text:
                pipe = self.client.pipeline(transaction=False)
                streams.add(pipe, box.generation_id, seq, {"type": "delta", "text": text})
                pipe.execute(raise_on_error=False)

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
        with self._lock:
            boxes = list(self._outboxes.values())
            batch: list[tuple[Outbox, int, str]] = []
            for box in boxes:
                if box.pending:
                    batch.append((box, box.next_seq(), "".join(box.pending)))
                    box.pending.clear()
                    box.urgent = False
        pipe = self.client.pipeline(transaction=False)
        for box, seq, text in batch:
            streams.add(pipe, box.generation_id, seq, {"type": "delta", "text": text})
        for box in boxes:
            pipe.exists(streams.stop_key(box.generation_id))
        results = pipe.execute(raise_on_error=False) if (batch or boxes) else []
        for result in results[: len(batch)]:
            if isinstance(result, Exception) and "equal or smaller" not in str(result):
                log.warning("stream write failed: %s", result)
        for box, stop in zip(boxes, results[len(batch) :], strict=False):
            if stop and not box.cancelled:
                box.cancelled = True
                if box.on_cancel is not None:
                    try:
                        box.on_cancel()
                    except Exception:
                        log.exception("cancel callback failed")
        now = time.monotonic()
        if boxes and now - self._last_heartbeat >= HEARTBEAT_EVERY_S:
            self._last_heartbeat = now
            self._heartbeat([box.generation_id for box in boxes])

    def _heartbeat(self, ids: list[str]) -> None:
        from modelhub.models import Generation, GenerationStatus

        close_old_connections()
        Generation.objects.filter(id__in=ids, status=GenerationStatus.STREAMING).update(
            heartbeat_at=timezone.now()
        )


_flusher: Flusher | None = None
_flusher_lock = threading.Lock()
_redis: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
    return _redis


def flusher() -> Flusher:
    global _flusher
    with _flusher_lock:
        if _flusher is None:
            _flusher = Flusher(redis_client(), settings.GENERATION_COALESCE_MS / 1000.0)
        return _flusher
