"""Replayable token streams: one bounded Redis Stream per generation.

Entries use explicit ids `<seq>-0`, so a sequence number can be written once only: a redelivered
write of an already stored delta is refused by Redis instead of reaching browsers twice. Readers
resume from any sequence number with XRANGE/XREAD, so a late or reconnecting socket gets every
delta from the start (or from where it left off) with no gap and no duplicate.

Frames (what browsers receive) are JSON objects:
    {"type": "delta", "id": <generation>, "seq": n, "text": "..."}
    {"type": "done" | "error" | "cancelled", "id": ..., "seq": n, ...terminal fields}
    {"type": "snapshot", "id": ..., "seq": n, "text": "<whole text so far>"}  (stream expired)
"""

from __future__ import annotations

import json
from typing import Any

import redis

STREAM_MAXLEN = 20_000
FINISHED_TTL_S = 3600
TERMINAL_TYPES = frozenset({"done", "error", "cancelled"})


def events_key(generation_id: str) -> str:
    return f"ludus:gen:{generation_id}:events"


def stop_key(generation_id: str) -> str:
    return f"ludus:gen:{generation_id}:stop"


def entry_id(seq: int) -> str:
    return f"{seq}-0"


def seq_of(entry: bytes | str) -> int:
    raw = entry.decode() if isinstance(entry, bytes) else entry
    return int(raw.split("-", 1)[0])


def encode(frame: dict[str, Any]) -> dict[Any, Any]:
    return {"f": json.dumps(frame, separators=(",", ":"))}


def decode(generation_id: str, entry: bytes | str, fields: dict[Any, Any]) -> dict[str, Any]:
    raw = fields.get(b"f") or fields.get("f") or b"{}"
    frame: dict[str, Any] = json.loads(raw)
    frame["id"] = generation_id
    frame["seq"] = seq_of(entry)
    return frame


def add(pipe: redis.client.Pipeline, generation_id: str, seq: int, frame: dict[str, Any]) -> None:
    """Queue one XADD on a pipeline (execute it with raise_on_error=False: duplicates are refused)."""
    pipe.xadd(
        events_key(generation_id),
        encode(frame),
        id=entry_id(seq),
        maxlen=STREAM_MAXLEN,
        approximate=True,
    )


# KEYS: the streams to append to (ARGV[1] of them), then the stop keys to count. ARGV: n, maxlen,
# then an entry id and an encoded frame per stream. Returns {stop keys set, errors}.
_ADD_MANY_LUA = """
local n = tonumber(ARGV[1])
local errors = {}
for i = 1, n do
  local r = redis.pcall('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], ARGV[2 * i + 1], 'f', ARGV[2 * i + 2])
  if type(r) == 'table' and r.err then errors[#errors + 1] = r.err end
end
local stops = 0
if #KEYS > n then stops = redis.call('EXISTS', unpack(KEYS, n + 1)) end
return {stops, errors}
"""
_add_many: Any = None


def add_many(
    client: redis.Redis,
    deltas: list[tuple[str, int, str]],
    watch: list[str] | tuple[str, ...] = (),
) -> tuple[int, list[bytes]]:
    """Append delta frames `(generation id, seq, text)` to their streams and count how many of the
    `watch` generations have their stop flag set, in one script call: one command for Redis and the
    client to handle, where a pipeline of XADDs cost a worker's Python about as much per delta as
    reading it from the upstream. Returns (stop flags set, errors); a refused duplicate is one of
    the errors ("equal or smaller")."""
    global _add_many
    if _add_many is None:
        _add_many = client.register_script(_ADD_MANY_LUA)
    keys = [events_key(gid) for gid, _, _ in deltas] + [stop_key(gid) for gid in watch]
    args: list[Any] = [len(deltas), STREAM_MAXLEN]
    for _, seq, text in deltas:
        args += [entry_id(seq), encode({"type": "delta", "text": text})["f"]]
    stops, errors = _add_many(keys=keys, args=args, client=client)
    return stops, errors


def add_terminal(client: redis.Redis, generation_id: str, seq: int, frame: dict[str, Any]) -> bool:
    """Write a terminal frame and let the stream expire later. False if that seq already exists."""
    pipe = client.pipeline(transaction=False)
    add(pipe, generation_id, seq, frame)
    pipe.expire(events_key(generation_id), FINISHED_TTL_S)
    pipe.delete(stop_key(generation_id))
    results = pipe.execute(raise_on_error=False)
    return not isinstance(results[0], Exception)


def last_seq(client: redis.Redis, generation_id: str) -> int:
    entries: Any = client.xrevrange(events_key(generation_id), count=1)
    return seq_of(entries[0][0]) if entries else 0


def read_all(client: redis.Redis, generation_id: str, after: int = 0) -> list[dict[str, Any]]:
    entries: Any = client.xrange(
        events_key(generation_id), min=f"({entry_id(after)}" if after else "-"
    )
    return [decode(generation_id, eid, fields) for eid, fields in entries]


# -- subscription tokens ----------------------------------------------------------------------
# The page that shows a generation can hand the browser a signed token for it, so that a socket
# subscribing with the token needs no session or database lookup: at hundreds of sockets per web
# process those lookups, serialised on Django's one sync thread, were what delayed first tokens.
# A token is a bearer capability for watching one generation, valid for TOKEN_MAX_AGE_S.

TOKEN_SALT = "ludus.generation-stream"
TOKEN_MAX_AGE_S = 24 * 3600


def stream_token(generation_id: str) -> str:
    from django.core import signing

    return signing.TimestampSigner(salt=TOKEN_SALT).sign(str(generation_id))


def token_age(token: str, generation_id: str) -> float | None:
    """Seconds since the token for this generation was issued, or None if it is not valid for it."""
    import time

    from django.core import signing

    try:
        value = signing.TimestampSigner(salt=TOKEN_SALT).unsign(token, max_age=TOKEN_MAX_AGE_S)
        issued = signing.b62_decode(token.rsplit(":", 2)[1])
    except (signing.BadSignature, ValueError, TypeError, IndexError):
        return None
    if value != str(generation_id):
        return None
    return max(0.0, time.time() - issued)
