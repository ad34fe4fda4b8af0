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
DAY_S = 86_400  # daily budgets: windows of a UTC day
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


def _key(scope: str, ident: str, window_s: int) -> str:
    return f"{KEY_PREFIX}{scope}:{ident}:{int(time.time() // window_s)}"


def hit(scope: str, limits: list[tuple[str, int]], *, window_s: int = WINDOW_S) -> bool:
    """Count one event against each (identity, limit) of `scope`, or against none of them when
    any limit is reached already; False in that case. Identities that are empty are skipped; a
    limit of 0 or less means no limit. `window_s`: the window's length (a minute, or DAY_S for a
    daily budget)."""
    keys = [(_key(scope, ident, window_s), limit) for ident, limit in limits if ident and limit > 0]
    if not keys:
        return True
    script = _script(redis_clients.client())
    allowed = script(keys=[key for key, _ in keys], args=[window_s * 2, *(n for _, n in keys)])
    return bool(allowed)


def refund(scope: str, ident: str, *, window_s: int = WINDOW_S) -> None:
    """Give back one event counted by `hit` (the action it allowed was refused after all)."""
    if ident:
        key = _key(scope, ident, window_s)
        client = redis_clients.client()
        if int(client.decr(key)) < 0:
            client.delete(key)


def used(scope: str, ident: str, *, window_s: int = WINDOW_S) -> int:
    """Events counted for `ident` in the current window."""
    if not ident:
        return 0
    return int(redis_clients.client().get(_key(scope, ident, window_s)) or 0)


# The daily vote budget, per voter (arena.selectors.Requester.ident).
VOTE_DAY_SCOPE = "vote-day"


def votes_left_today(ident: str, budget: int) -> int | None:
    """Votes `ident` may still cast today; None without a budget."""
    if budget <= 0:
        return None
    return max(budget - used(VOTE_DAY_SCOPE, ident, window_s=DAY_S), 0)
