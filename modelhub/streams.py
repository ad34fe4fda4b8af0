"""Replayable token streams: one bounded Redis Stream per generation.

Entries use explicit ids `<seq>-0`, so a sequence number can be written once only: a redelivered
write of an already stored delta is refused by Redis instead of reaching browsers twice. Readers
resume from any sequence number with XRANGE/XREAD, so a late or reconnecting socket gets every
delta from the start (or from where it left off) with no gap and no duplicate.

Frames (what browsers receive; a websocket message is one frame or an array of them, see
modelhub.consumers) are JSON objects:
    {"type": "delta", "id": <generation>, "seq": n, "text": "..."}
    {"type": "done" | "error" | "cancelled", "id": ..., "seq": n, ...terminal fields}
    {"type": "snapshot", "id": ..., "seq": n, "text": "<whole text so far>"}  (stream expired)
    {"type": "tool_call", "id": ..., "seq": n, "call": "call_<k>", "name": ..., "arguments": ...}
    {"type": "tool_result", "id": ..., "seq": n, "call": "call_<k>", "result": ..., "error": ...}
Tool frames name a call by its order in the answer and carry no timing: an anonymous answer's
frames must not tell its serving stack apart (the stored calls keep the upstream's ids).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import redis

STREAM_MAXLEN = 20_000
FINISHED_TTL_S = 3600
TERMINAL_TYPES = frozenset({"done", "error", "cancelled"})
# Every frame written to a generation's stream is also appended, in the same script call, to one
# firehose stream that web processes read (see streamhub): one blocking read of one key, however
# many generations a process watches. It keeps the last FIREHOSE_KEEP_MS of frames.
FIREHOSE_KEY = "ludus:gen:firehose"
FIREHOSE_KEEP_MS = 60_000


def events_key(generation_id: str) -> str:
    return f"ludus:gen:{generation_id}:events"


def stop_key(generation_id: str) -> str:
    return f"ludus:gen:{generation_id}:stop"


def entry_id(seq: int) -> str:
    return f"{seq}-0"


def seq_of(entry: bytes | str) -> int:
    raw = entry.decode() if isinstance(entry, bytes) else entry
    return int(raw.split("-", 1)[0])


def encode(frame: dict[str, Any]) -> str:
    """A stored frame: JSON with "type" first, so readers can tell a delta without parsing it."""
    return json.dumps({"type": frame["type"], **frame}, separators=(",", ":"))


def encode_delta(text: str) -> str:
    """`encode({"type": "delta", "text": text})`, for the one frame written per token: a tenth of
    the CPU of building and dumping the dict."""
    return '{"type":"delta","text":' + json.dumps(text) + "}"


def field_pairs(fields: Any) -> Iterable[tuple[Any, Any]]:
    """A stream entry's (field, value) pairs, whether its fields came as a map (redis-py's parsed
    replies, RESP3) or as the flat [field, value, ...] list of a raw RESP2 reply."""
    if isinstance(fields, dict):
        return fields.items()
    return zip(fields[::2], fields[1::2], strict=True)


def _stored(fields: dict[Any, Any]) -> bytes | str:
    """The encoded frame of a stream entry's fields (bytes or text keys, as the client decodes)."""
    return fields.get(b"f") or fields.get("f") or b"{}"


def decode(generation_id: str, entry: bytes | str, fields: dict[Any, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(_stored(fields))
    frame["id"] = generation_id
    frame["seq"] = seq_of(entry)
    return frame


class Wire(NamedTuple):
    """A frame as a socket sends it: its JSON text, made from the stored text without decoding it
    (a web process relays thousands of frames a second)."""

    generation_id: str
    seq: int
    terminal: bool
    text: str


_DELTA_PREFIX = '{"type":"delta"'
_TERMINAL_PREFIXES = tuple(f'{{"type":"{kind}"' for kind in sorted(TERMINAL_TYPES))


def wire(generation_id: str, seq: int, stored: bytes | str) -> Wire:
    body = stored.decode() if isinstance(stored, bytes) else stored
    text = f'{{"id":{json.dumps(generation_id)},"seq":{seq}{"," if len(body) > 2 else ""}{body[1:]}'
    terminal = not body.startswith(_DELTA_PREFIX) and body.startswith(_TERMINAL_PREFIXES)
    return Wire(generation_id, seq, terminal, text)


def wire_entry(generation_id: str, entry: bytes | str, fields: Any) -> Wire:
    """`wire` for a stream entry as read from Redis: its fields a map, or the flat [field, value,
    ...] list of a raw reply (streamhub.StreamHub.replay)."""
    return wire(generation_id, seq_of(entry), _stored(dict(field_pairs(fields))))


def wire_frame(frame: dict[str, Any]) -> Wire:
    """A frame made here rather than read from a stream (a snapshot, a terminal state from
    PostgreSQL)."""
    return Wire(frame["id"], frame["seq"], frame["type"] in TERMINAL_TYPES, json.dumps(frame))


# Appends the successful writes of a script to the firehose, as (generation id, "<seq> <frame>")
# field pairs: a reader skips the generations it does not watch without parsing their frames.
# `fire` holds those pairs; KEYS[firehose] the firehose key; keep_ms how much history it keeps.
_FIREHOSE_LUA = """
local function firehose(key, fire, keep_ms)
  if #fire == 0 then return end
  local t = redis.call('TIME')
  local minid = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - keep_ms)
  for i = 1, #fire, 2000 do  -- unpack takes at most a few thousand values
    redis.call('XADD', key, 'MINID', '~', minid, '*', unpack(fire, i, math.min(i + 1999, #fire)))
  end
end
local function fired(fire, key, id, frame)
  fire[#fire + 1] = string.sub(key, 11, -8)  -- ludus:gen:<id>:events
  fire[#fire + 1] = string.sub(id, 1, -3) .. ' ' .. frame  -- <seq>-0
end
"""

# KEYS: the streams to append to (ARGV[1] of them), the firehose, then the stop keys to count.
# ARGV: n, maxlen, keep_ms, then an entry id and an encoded frame per stream.
# Returns {stop keys set, errors}. (TIME needs effects replication, which Redis 7 always does.)
_ADD_MANY_LUA = (
    "redis.replicate_commands()\n"
    + _FIREHOSE_LUA
    + """
local n = tonumber(ARGV[1])
local errors, fire = {}, {}
for i = 1, n do
  local id, frame = ARGV[2 * i + 2], ARGV[2 * i + 3]
  local r = redis.pcall('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], id, 'f', frame)
  if type(r) == 'table' and r.err then errors[#errors + 1] = r.err else fired(fire, KEYS[i], id, frame) end
end
firehose(KEYS[n + 1], fire, tonumber(ARGV[3]))
local stops = 0
if #KEYS > n + 1 then stops = redis.call('EXISTS', unpack(KEYS, n + 2)) end
return {stops, errors}
"""
)

# KEYS: the stream, the firehose, the stop key, then the hash of counters when there are any.
# ARGV: maxlen, keep_ms, entry id, frame, ttl, then the last delta's entry id and frame ("" for
# none), then field/increment pairs for the counters (from ARGV[8]).
# Returns 1, or 0 when the terminal entry id exists already. The delta, the terminal frame and the
# counters go in one call: at the end of every generation, one round trip instead of three.
_ADD_TERMINAL_LUA = (
    "redis.replicate_commands()\n"
    + _FIREHOSE_LUA
    + """
-- One firehose entry per frame: an entry holds a generation once (its fields are generation ids).
local function add(id, frame)
  local r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, 'f', frame)
  if type(r) == 'table' and r.err then return false end
  local fire = {}
  fired(fire, KEYS[1], id, frame)
  firehose(KEYS[2], fire, tonumber(ARGV[2]))
  return true
end
if ARGV[6] ~= '' then add(ARGV[6], ARGV[7]) end
local ok = add(ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[3])
-- pcall: the figures must never fail a generation
for i = 8, #ARGV, 2 do redis.pcall('HINCRBYFLOAT', KEYS[4], ARGV[i], ARGV[i + 1]) end
if ok then return 1 end
return 0
"""
)
_scripts: dict[str, Any] = {}


def script(client: redis.Redis, source: str) -> Any:
    """The registered Lua script (EVALSHA, loaded again if Redis lost it), one per source."""
    registered = _scripts.get(source)
    if registered is None:
        registered = _scripts[source] = client.register_script(source)
    return registered


def add_many(
    client: redis.Redis,
    deltas: Sequence[tuple[str, int, str | dict[str, Any]]],
    watch: list[str] | tuple[str, ...] = (),
) -> tuple[int, list[bytes]]:
    """Append delta frames `(generation id, seq, text)` to their streams (and the firehose) and
    count how many of the `watch` generations have their stop flag set, in one script call: one
    command for Redis and the client to handle, where a pipeline of XADDs cost a worker's Python
    about as much per delta as reading it from the upstream. Returns (stop flags set, errors); a
    refused duplicate is one of the errors ("equal or smaller") and stays off the firehose.
    A frame other than a delta (a tool call) is given as its dict in place of the text."""
    keys = [events_key(gid) for gid, _, _ in deltas] + [FIREHOSE_KEY]
    keys += [stop_key(gid) for gid in watch]
    args: list[Any] = [len(deltas), STREAM_MAXLEN, FIREHOSE_KEEP_MS]
    for _, seq, text in deltas:
        args += [entry_id(seq), encode_delta(text) if isinstance(text, str) else encode(text)]
    stops, errors = script(client, _ADD_MANY_LUA)(keys=keys, args=args, client=client)
    return stops, errors


def add_terminal(
    client: redis.Redis,
    generation_id: str,
    seq: int,
    frame: dict[str, Any],
    *,
    last_delta: tuple[int, str] | None = None,
    counters: tuple[str, Sequence[tuple[str, float]]] | None = None,
) -> bool:
    """Write a terminal frame and let the stream expire later. False if that seq already exists.

    In the same call: `last_delta` `(seq, text)`, the text still unwritten when the answer ended
    (see pool.Flusher.take), written before the terminal frame; and `counters`, `(hash key,
    [(field, increment), ...])`, added to that hash (the endpoint's serving figures)."""
    keys = [events_key(generation_id), FIREHOSE_KEY, stop_key(generation_id)]
    args: list[Any] = [
        STREAM_MAXLEN,
        FIREHOSE_KEEP_MS,
        entry_id(seq),
        encode(frame),
        FINISHED_TTL_S,
    ]
    if last_delta is not None:
        args += [entry_id(last_delta[0]), encode_delta(last_delta[1])]
    else:
        args += ["", ""]
    if counters is not None:
        key, increments = counters
        keys.append(key)
        for field, amount in increments:
            args += [field, amount]
    return bool(script(client, _ADD_TERMINAL_LUA)(keys=keys, args=args, client=client))


def last_seq(client: redis.Redis, generation_id: str) -> int:
    entries: Any = client.xrevrange(events_key(generation_id), count=1)
    return seq_of(entries[0][0]) if entries else 0


def read_all(client: redis.Redis, generation_id: str, after: int = 0) -> list[dict[str, Any]]:
    entries: Any = client.xrange(
        events_key(generation_id), min=f"({entry_id(after)}" if after else "-"
    )
    return [decode(generation_id, eid, fields) for eid, fields in entries]


def streamed_text(client: redis.Redis, generation_id: str) -> tuple[str, int]:
    """(the text its delta frames hold, the last seq written) of a generation's stream: what the
    browsers saw of an answer whose worker died before storing it. (The stream keeps the last
    STREAM_MAXLEN frames, far more than an answer's max_tokens produce.)"""
    frames = read_all(client, generation_id)
    text = "".join(f.get("text", "") for f in frames if f["type"] == "delta")
    return text, (frames[-1]["seq"] if frames else 0)


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
