"""Fixed-window rate limits in Redis: one script checks every limit of a request at once.

An event is counted only when every limit passes: a visitor over their own limit (per user or
session) then spends nothing of a shared budget (per IP), so the others behind the same address
keep theirs."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from modelhub import redis_clients

WINDOW_S = 60
KEY_PREFIX = "ludus:rl:"

# KEYS: the counters; ARGV: the window's TTL, then each counter's limit. Atomic, as every script.
_HIT = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return 1
"""


@lru_cache(maxsize=1)
def _script(client: Any) -> Any:
    return client.register_script(_HIT)


def hit(scope: str, limits: list[tuple[str, int]]) -> bool:
    """Count one event against each (identity, limit) of `scope`, or against none of them when
    any limit is reached already; False in that case. Identities that are empty are skipped; a
    limit of 0 or less means no limit."""
    window = int(time.time() // WINDOW_S)
    keys = [
        (f"{KEY_PREFIX}{scope}:{ident}:{window}", limit)
        for ident, limit in limits
        if ident and limit > 0
    ]
    if not keys:
        return True
    script = _script(redis_clients.client())
    allowed = script(keys=[key for key, _ in keys], args=[WINDOW_S * 2, *(n for _, n in keys)])
    return bool(allowed)
