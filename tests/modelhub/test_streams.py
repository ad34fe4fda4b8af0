"""The replayable stream format, the firehose that web processes read, and the stream hub, through
the real ASGI app and Redis (no worker: these tests write the frames a worker would)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from modelhub import streams
from modelhub.pool import redis_client
from modelhub.streamhub import hub_for_loop
from tests.helpers import receive_frame, run_async

pytestmark = [pytest.mark.django_db(transaction=True)]

HOSTILE = 'quote " back \\ new\nline </script><b>é😀\x01'


def _firehose() -> list[tuple[str, str]]:
    """(generation id, "<seq> <frame>") pairs on the firehose, oldest first."""
    pairs = []
    entries: Any = redis_client().xrange(streams.FIREHOSE_KEY)
    for _, fields in entries:
        pairs += [(k.decode(), v.decode()) for k, v in fields.items()]
    return pairs


def test_a_wire_frame_is_the_stored_frame_with_its_id_and_seq() -> None:
    gid = str(uuid.uuid4())
    for frame, terminal in (
        ({"type": "delta", "text": HOSTILE}, False),
        ({"type": "done", "finish_reason": "stop", "ttft_ms": 1.5}, True),
        ({"finish_reason": "error", "type": "error", "message": HOSTILE}, True),
        ({"type": "cancelled"}, True),
    ):
        stored = streams.encode(frame)
        assert stored.startswith('{"type":')
        if frame["type"] == "delta":
            assert streams.encode_delta(str(frame["text"])) == stored
        wire = streams.wire(gid, 7, stored.encode())
        assert json.loads(wire.text) == streams.decode(gid, "7-0", {b"f": stored.encode()})
        assert json.loads(wire.text) == frame | {"id": gid, "seq": 7}
        assert (wire.generation_id, wire.seq, wire.terminal) == (gid, 7, terminal)


def test_the_firehose_carries_each_stored_frame_once() -> None:
    client = redis_client()
    client.delete(streams.FIREHOSE_KEY)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    stops, errors = streams.add_many(client, [(a, 1, "a1"), (b, 1, HOSTILE)])
    assert (stops, errors) == (0, [])
    # A redelivered delta is refused by its stream, and stays off the firehose.
    stops, errors = streams.add_many(client, [(a, 1, "again"), (a, 2, "a2")])
    assert len(errors) == 1 and b"equal or smaller" in errors[0]
    assert streams.add_terminal(client, a, 3, {"type": "done", "finish_reason": "stop"})
    assert not streams.add_terminal(client, a, 3, {"type": "done", "finish_reason": "stop"})
    fire = _firehose()
    assert [(gid, value.split(" ", 1)[0]) for gid, value in fire] == [
        (a, "1"),
        (b, "1"),
        (a, "2"),
        (a, "3"),
    ]
    _seq, stored = fire[1][1].split(" ", 1)
    assert json.loads(stored) == {"type": "delta", "text": HOSTILE}
    assert [f["text"] for f in streams.read_all(client, a)[:2]] == ["a1", "a2"]
    assert client.ttl(streams.events_key(a)) > 0  # the finished stream expires


async def _socket() -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        application, "/ws/generations/",
        headers=[(b"origin", b"http://testserver"), (b"host", b"testserver")],
    )  # fmt: skip
    connected, _ = await comm.connect()
    assert connected
    return comm


async def _subscribe(comm: WebsocketCommunicator, gid: str, after: int = 0) -> None:
    item = {"id": gid, "after": after, "token": streams.stream_token(gid)}
    await comm.send_json_to({"type": "subscribe", "generations": [item]})


async def _until_terminal(comm: WebsocketCommunicator) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in streams.TERMINAL_TYPES:
        frames.append(await receive_frame(comm, timeout=10))
    return frames


def test_the_terminal_call_writes_the_last_delta_first_and_adds_the_counters() -> None:
    client = redis_client()
    client.delete(streams.FIREHOSE_KEY)
    gid, figures = str(uuid.uuid4()), f"test:figures:{uuid.uuid4()}"
    streams.add_many(client, [(gid, 1, "one ")])
    counters = (figures, [("requests", 1), ("ttft_ms_sum", 12.5), ("tokens", 3)])

    assert streams.add_terminal(
        client, gid, 3, {"type": "done"}, last_delta=(2, HOSTILE), counters=counters
    )

    frames = streams.read_all(client, gid)
    assert [(f["seq"], f["type"], f.get("text")) for f in frames] == [
        (1, "delta", "one "),
        (2, "delta", HOSTILE),
        (3, "done", None),
    ]
    assert [(gid_, value.split(" ", 1)[0]) for gid_, value in _firehose()] == [
        (gid, "1"),
        (gid, "2"),
        (gid, "3"),
    ]
    assert client.hgetall(figures) == {b"requests": b"1", b"ttft_ms_sum": b"12.5", b"tokens": b"3"}
    # Again (a redelivery): both entries are refused and stay off the firehose; the counters are
    # the caller's to send once.
    assert not streams.add_terminal(client, gid, 3, {"type": "done"}, last_delta=(2, "again"))
    assert len(streams.read_all(client, gid)) == 3 and len(_firehose()) == 3
    # Figures that cannot be added (the key holds something else) do not fail the terminal frame.
    other = str(uuid.uuid4())
    client.set(figures, "not a hash")
    assert streams.add_terminal(client, other, 1, {"type": "done"}, counters=counters)
    assert [f["type"] for f in streams.read_all(client, other)] == ["done"]
    client.delete(figures)


def test_each_socket_gets_its_own_generations_frames_in_order_from_the_firehose() -> None:
    client = redis_client()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    streams.add_many(client, [(a, 1, "a1"), (b, 1, "b1")])  # stored before anyone watches

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        sa, sb = await _socket(), await _socket()
        await _subscribe(sa, a)
        await _subscribe(sb, b, after=1)
        first = await receive_frame(sa, timeout=10)  # a's replay has been sent
        assert first["seq"] == 1
        for seq in range(2, 40):  # live frames of both, interleaved, in ticks of the flusher
            streams.add_many(client, [(a, seq, f"a{seq}"), (b, seq, f"b{seq}")])
            await asyncio.sleep(0)
        streams.add_terminal(client, a, 40, {"type": "done", "finish_reason": "stop"})
        streams.add_terminal(client, b, 40, {"type": "error", "message": "broke"})
        frames_a = [first, *await _until_terminal(sa)]
        frames_b = await _until_terminal(sb)
        await sa.disconnect()
        await sb.disconnect()
        # With nobody watching, the reader stops at its next wake-up (any frame written).
        hub = hub_for_loop("unused: the hub of this loop exists already")
        streams.add_many(client, [(str(uuid.uuid4()), 1, "nobody watches")])
        for _ in range(200):
            if hub.task is None:
                break
            await asyncio.sleep(0.01)
        return frames_a, frames_b, hub.task is None

    frames_a, frames_b, stopped = run_async(scenario())
    assert [f["seq"] for f in frames_a] == list(range(1, 41))
    assert [f.get("text") for f in frames_a[:-1]] == [f"a{i}" for i in range(1, 40)]
    assert {f["id"] for f in frames_a} == {a}
    assert frames_a[-1] == {"type": "done", "finish_reason": "stop", "id": a, "seq": 40}
    assert [f["seq"] for f in frames_b] == list(range(2, 41))  # after=1
    assert {f["id"] for f in frames_b} == {b} and frames_b[-1]["type"] == "error"
    assert stopped


def test_frames_ready_together_go_to_a_socket_in_one_message_in_order() -> None:
    client = redis_client()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    streams.add_many(client, [(a, 1, "a1"), (b, 1, "b1")])
    streams.add_many(client, [(a, 2, "a2")])

    async def scenario() -> list[Any]:
        comm = await _socket()
        await _subscribe(comm, b)
        messages = [await comm.receive_json_from(timeout=10)]  # b's replay: one frame
        await _subscribe(comm, a)
        messages.append(await comm.receive_json_from(timeout=10))  # a's replay: two frames
        streams.add_many(client, [(a, 3, "a3"), (b, 2, "b2")])  # one tick moves both answers
        messages.append(await comm.receive_json_from(timeout=10))
        await comm.disconnect()
        return messages

    alone, replay, tick = run_async(scenario())
    assert (alone["id"], alone["seq"], alone["text"]) == (b, 1, "b1")
    assert [(f["id"], f["seq"], f["text"]) for f in replay] == [(a, 1, "a1"), (a, 2, "a2")]
    assert [(f["id"], f["seq"], f["text"]) for f in tick] == [(a, 3, "a3"), (b, 2, "b2")]


def test_frames_written_during_a_replay_follow_it_without_gap_or_duplicate() -> None:
    """The hub delivers live frames while the socket is still sending the stored ones: they wait,
    and go out after the replay in order."""
    client = redis_client()
    gid = str(uuid.uuid4())
    streams.add_many(client, [(gid, seq, f"t{seq}") for seq in range(1, 301)])

    async def writer() -> None:
        for seq in range(301, 400):
            streams.add_many(client, [(gid, seq, f"t{seq}")])
            await asyncio.sleep(0)
        streams.add_terminal(client, gid, 400, {"type": "done", "finish_reason": "stop"})

    async def scenario() -> list[dict[str, Any]]:
        comm = await _socket()
        await _subscribe(comm, gid)
        writing = asyncio.create_task(writer())
        frames = await _until_terminal(comm)
        await writing
        await comm.disconnect()
        return frames

    frames = run_async(scenario())
    assert [f["seq"] for f in frames] == list(range(1, 401))
    assert "".join(f.get("text", "") for f in frames) == "".join(f"t{i}" for i in range(1, 400))


def test_a_socket_whose_hub_loses_redis_is_closed_and_resumes_without_a_gap() -> None:
    """Frames written while the hub cannot read would be missed: its sockets are closed instead, and
    the browser's reconnect (subscribing after its last frame) replays them."""
    from modelhub.streamhub import READER_NAME

    client = redis_client()
    gid = str(uuid.uuid4())
    streams.add_many(client, [(gid, 1, "t1")])

    async def scenario() -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
        comm = await _socket()
        await _subscribe(comm, gid)
        first = await receive_frame(comm, timeout=10)
        reader = hub_for_loop("unused: the hub of this loop exists already").reader_id
        named = {c["id"] for c in client.client_list() if c.get("name") == READER_NAME}
        assert str(reader) in named
        client.client_kill_filter(_id=str(reader))
        closed = await comm.receive_output(timeout=10)
        streams.add_many(client, [(gid, 2, "t2")])  # while nobody reads
        streams.add_terminal(client, gid, 3, {"type": "done", "finish_reason": "stop"})
        again = await _socket()
        await _subscribe(again, gid, after=first["seq"])
        frames = await _until_terminal(again)
        await again.disconnect()
        return first, closed, frames

    first, closed, frames = run_async(scenario())
    assert first["seq"] == 1
    assert closed == {"type": "websocket.close", "code": 1011}
    assert [(f["seq"], f.get("text")) for f in frames] == [(2, "t2"), (3, None)]


def test_a_socket_takes_an_end_that_never_reached_redis_from_postgresql(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Redis was down as the answer finished: its row says done, its stream holds no end frame.
    The watching socket, hearing nothing, reads the end from PostgreSQL."""
    from datetime import timedelta

    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.utils import timezone

    from modelhub import consumers, services
    from modelhub.models import Generation, GenerationStatus
    from tests.factories import ModelFactory

    monkeypatch.setattr(consumers, "QUIET_CHECK_S", 0.2)
    session = SessionStore()
    session.create()
    model = ModelFactory.create(queue="gen.stream-unit-tests")  # no worker takes it
    generation = services.generation_create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        params=services.generation_params(model=model),
        session_key=str(session.session_key),
    )
    gid = str(generation.id)
    streams.add_many(redis_client(), [(gid, 1, "one ")])  # what reached Redis
    Generation.objects.filter(id=generation.id).update(
        status=GenerationStatus.DONE,
        text="one two",
        last_seq=3,
        finish_reason="stop",
        finished_at=timezone.now() - timedelta(seconds=5),
    )

    async def scenario() -> list[dict[str, Any]]:
        comm = await _socket()
        await _subscribe(comm, gid)
        frames = await _until_terminal(comm)
        await comm.disconnect()
        return frames

    frames = run_async(scenario())
    assert [(f["type"], f["seq"], f.get("text")) for f in frames] == [
        ("delta", 1, "one "),
        ("snapshot", 2, "one two"),
        ("done", 3, None),
    ]
