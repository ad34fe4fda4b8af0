"""A model's `max_concurrency`, held across every worker: a slot per answer streaming.

Each model has a sorted set in Redis of the answers that hold one of its slots, each scored by the
time its lease ends. A claim takes slots for its answers in one script call: it drops the expired
leases, then admits answers in the order asked while the set is smaller than the limit (an answer
that holds a slot already keeps it). Redis runs scripts one at a time, so two claims never both take
a model's last slot, and no claim waits for another's turn: a lock in PostgreSQL did the same, but
under a burst that saturates the cores its hand-offs queued the claims for hundreds of ms.

Finishing frees the slot; the heartbeat of the worker that streams an answer renews its lease; a
worker that dies leaves leases that end after LEASE_S, when the slots come back.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from modelhub.streams import script

LEASE_S = 30

_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local until_ = now + tonumber(ARGV[1])
for i = 1, #KEYS do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
local taken = {}
for i = 1, #KEYS do
  local key, limit, member = KEYS[i], tonumber(ARGV[2 * i]), ARGV[2 * i + 1]
  if redis.call('ZSCORE', key, member) or redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, until_, member)
    taken[i] = 1
  else
    taken[i] = 0
  end
end
return taken
"""

_RENEW_LUA = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1e6 + tonumber(ARGV[1])
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 'XX', until_, ARGV[i + 1]) end
return #KEYS
"""


def key(model_id: int) -> str:
    return f"ludus:slots:{model_id}"


def take(client: redis.Redis, wants: Sequence[tuple[int, int, str]]) -> list[bool]:
    """For each `(model id, max_concurrency, generation id)`, in order: whether it got a slot."""
    if not wants:
        return []
    args: list[object] = [LEASE_S]
    for _, limit, generation_id in wants:
        args += [limit, generation_id]
    keys = [key(model_id) for model_id, _, _ in wants]
    taken = script(client, _TAKE_LUA)(keys=keys, args=args, client=client)
    return [bool(flag) for flag in taken]  # type: ignore[union-attr]


def renew(client: redis.Redis, held: Sequence[tuple[int, str]]) -> None:
    """Extend the leases of these `(model id, generation id)` slots (those still held)."""
    if held:
        keys = [key(model_id) for model_id, _ in held]
        script(client, _RENEW_LUA)(
            keys=keys, args=[LEASE_S, *(gid for _, gid in held)], client=client
        )


def free(client: redis.Redis, model_id: int, generation_id: str) -> None:
    client.zrem(key(model_id), generation_id)
