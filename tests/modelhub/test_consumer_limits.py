"""What one websocket client may cost the web process: messages are capped before any JSON is
parsed (here and in the server's own limit), and a socket asks for a bounded number of
generations, the ones it was refused included. Through the real ASGI app."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from modelhub.consumers import MAX_MESSAGE_BYTES, MAX_SUBSCRIPTIONS
from tests.helpers import ROOT, receive_frame, run_async

pytestmark = [pytest.mark.django_db(transaction=True)]


async def _socket() -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        application, "/ws/generations/",
        headers=[(b"origin", b"http://testserver"), (b"host", b"testserver")],
    )  # fmt: skip
    connected, _ = await comm.connect()
    assert connected
    return comm


def test_it_closes_the_socket_on_a_message_larger_than_the_protocol_needs() -> None:
    async def scenario() -> dict:  # type: ignore[type-arg]
        comm = await _socket()
        # Valid JSON, a subscribe the consumer would otherwise parse and answer.
        padded = {"type": "subscribe", "generations": [], "pad": "x" * MAX_MESSAGE_BYTES}
        await comm.send_to(text_data=json.dumps(padded))
        closed = await comm.receive_output(timeout=5)
        await comm.disconnect()
        return closed

    assert run_async(scenario()) == {"type": "websocket.close", "code": 1009}


def test_a_message_within_the_cap_is_answered() -> None:
    async def scenario() -> object:
        comm = await _socket()
        await comm.send_json_to({"type": "subscribe", "generations": [], "pad": "x" * 1000})
        reply = await receive_frame(comm)
        await comm.disconnect()
        return reply

    assert run_async(scenario())["type"] == "invalid"  # type: ignore[index]


def test_the_server_refuses_larger_frames_than_the_consumer_reads() -> None:
    web = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    found = re.search(r"--ws-max-size (\d+)", web)
    assert found is not None and int(found.group(1)) == MAX_MESSAGE_BYTES


def test_refused_subscriptions_count_toward_the_sockets_cap() -> None:
    async def scenario() -> list[object]:
        comm = await _socket()
        replies = []
        for k in range(3):  # three messages of foreign ids, each within the cap on its own
            ids = [str(uuid.uuid4()) for _ in range(MAX_SUBSCRIPTIONS // 2)]
            await comm.send_json_to(
                {"type": "subscribe", "generations": [{"id": gid} for gid in ids]}
            )
            replies += [await receive_frame(comm) for _ in range(len(ids) if k < 2 else 1)]
        # Nor does one id asked for many times in one message.
        await comm.send_json_to(
            {"type": "subscribe", "generations": [{"id": "x"}] * (MAX_SUBSCRIPTIONS + 1)}
        )
        replies.append(await receive_frame(comm))
        await comm.disconnect()
        return replies

    replies = run_async(scenario())
    assert {r["type"] for r in replies[:MAX_SUBSCRIPTIONS]} == {"denied"}  # type: ignore[index]
    assert replies[MAX_SUBSCRIPTIONS] == {  # the socket asked for its cap already: no more lookups
        "type": "invalid",
        "message": f"subscribe to 1-{MAX_SUBSCRIPTIONS} generations per socket",
    }
    assert replies[-1] == replies[MAX_SUBSCRIPTIONS]
