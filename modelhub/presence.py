"""Which Celery workers are alive and which queues they consume.

Each worker announces itself in Redis every BEAT_S seconds under a key that expires after TTL_S
(worker/celery.py calls `presence_announce` from its worker_ready thread and `presence_withdraw`
on shutdown), so /healthz reads live workers with one scan (`presence_list`) instead of a
broadcast round trip, and a worker that dies without withdrawing drops out within TTL_S.
"""

from __future__ import annotations

import json
from typing import Any

from modelhub.redis_clients import client as redis_client

KEY_PREFIX = "ludus:workers:"
BEAT_S = 5
TTL_S = 15  # three beats: one late beat does not mark a live worker gone


def presence_key(hostname: str) -> str:
    return KEY_PREFIX + hostname


def presence_announce(*, hostname: str, queues: list[str], host: str) -> None:
    """Mark the worker `hostname` (Celery's node name, running on `host`) alive for TTL_S."""
    payload = json.dumps({"hostname": hostname, "queues": sorted(queues), "host": host})
    redis_client().set(presence_key(hostname), payload, ex=TTL_S)


def presence_withdraw(*, hostname: str) -> None:
    redis_client().delete(presence_key(hostname))


def presence_list() -> list[dict[str, Any]]:
    """Every live worker's announcement: {"hostname", "queues", "host"}."""
    client = redis_client()
    keys = list(client.scan_iter(match=KEY_PREFIX + "*", count=500))
    if not keys:
        return []
    return [json.loads(raw) for raw in client.mget(keys) if raw]
