"""Fixed-window rate limits in Redis: one pipelined round trip checks every limit of a request."""

from __future__ import annotations

import time

from modelhub import redis_clients

WINDOW_S = 60
KEY_PREFIX = "ludus:rl:"


def hit(scope: str, limits: list[tuple[str, int]]) -> bool:
    """Count one event against each (identity, limit) of `scope`; False when any limit is passed.
    Identities that are empty are skipped; a limit of 0 or less means no limit."""
    window = int(time.time() // WINDOW_S)
    keys = [
        (f"{KEY_PREFIX}{scope}:{ident}:{window}", limit)
        for ident, limit in limits
        if ident and limit > 0
    ]
    if not keys:
        return True
    pipe = redis_clients.client().pipeline(transaction=False)
    for key, _ in keys:
        pipe.incr(key)
        pipe.expire(key, WINDOW_S * 2)
    counts = pipe.execute()[0::2]
    return all(count <= limit for count, (_, limit) in zip(counts, keys, strict=True))
