"""Which Celery workers are alive and which queues they consume.

Each worker announces itself every BEAT_S seconds (worker/celery.py calls `presence_announce` from
its worker_ready thread and `presence_withdraw` on shutdown); an announcement lasts TTL_S, so a
worker that dies without withdrawing drops out within TTL_S. /healthz reads every live worker with
`presence_list`, one script over two keys whatever else Redis holds, instead of a broadcast round
trip or a scan of the keyspace.

Two keys: a sorted set of hostnames scored by when their announcement expires, and a hash of each
hostname's announcement. Expiry is read from the Redis server's clock, so workers on hosts whose
clocks disagree still expire on time; the scripts keep the two keys in step atomically.
"""

from __future__ import annotations

import json
from typing import Any

from modelhub.redis_clients import client as redis_client

EXPIRIES_KEY = "ludus:workers:expiry"  # hostname -> when its announcement expires (server time, s)
PAYLOADS_KEY = "ludus:workers:payload"  # hostname -> its announcement (JSON)
BEAT_S = 5
TTL_S = 15  # three beats: one late beat does not mark a live worker gone

# The Redis server's clock in seconds, as a Lua number.
_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"

_ANNOUNCE = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
"""
)

# Drops the expired announcements (from both keys), then returns the live ones.
_LIST = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #expired > 0 then
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('HDEL', KEYS[2], unpack(expired))
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(live))
"""
)


def presence_announce(*, hostname: str, queues: list[str], host: str, ttl_s: float = TTL_S) -> None:
    """Mark the worker `hostname` (Celery's node name, running on `host`) alive for `ttl_s`."""
    payload = json.dumps({"hostname": hostname, "queues": sorted(queues), "host": host})
    script = redis_client().register_script(_ANNOUNCE)
    script(keys=[EXPIRIES_KEY, PAYLOADS_KEY], args=[hostname, payload, ttl_s])


def presence_withdraw(*, hostname: str) -> None:
    pipe = redis_client().pipeline(transaction=True)
    pipe.zrem(EXPIRIES_KEY, hostname)
    pipe.hdel(PAYLOADS_KEY, hostname)
    pipe.execute()


def presence_list() -> list[dict[str, Any]]:
    """Every live worker's announcement: {"hostname", "queues", "host"}."""
    script = redis_client().register_script(_LIST)
    return [json.loads(raw) for raw in script(keys=[EXPIRIES_KEY, PAYLOADS_KEY]) if raw]


def presence_expires_in(*, hostname: str) -> float | None:
    """Seconds until `hostname`'s announcement expires (by the Redis server's clock); None when it
    has none."""
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    pipe.zscore(EXPIRIES_KEY, hostname)
    pipe.time()
    expiry, (seconds, micros) = pipe.execute()
    return None if expiry is None else expiry - (seconds + micros / 1e6)
