"""The OpenAI-protocol client against a real (fake) upstream server over HTTP."""

from __future__ import annotations

import time

import aiohttp
import httpx
import pytest

from modelhub import client as oai
from tests.conftest import run_async


def _astream(
    upstream, model: str, max_tokens: int = 5, read: float = 5.0, message: dict | None = None
) -> list[oai.Delta | oai.Finish]:  # type: ignore[no-untyped-def]
    async def read_all() -> list[oai.Delta | oai.Finish]:
        payload = oai.build_payload(
            model, [message or {"role": "user", "content": "hi"}], {"max_tokens": max_tokens}
        )
        events: list[oai.Delta | oai.Finish] = []
        async with (
            aiohttp.ClientSession() as http,
            oai.AsyncChatStream(
                http, upstream.base_url, payload, timeouts=oai.Timeouts(1, read)
            ) as stream,
        ):
            async for item in stream.events():
                events.extend(item if isinstance(item, list) else [item])
        return events

    return run_async(read_all())


def test_it_streams_deltas_and_one_finish_with_usage(upstream) -> None:  # type: ignore[no-untyped-def]
    events = _astream(upstream, "fake", max_tokens=5)
    assert "".join(e.text for e in events if isinstance(e, oai.Delta)) == "t0 t1 t2 t3 t4 "
    assert [e for e in events if isinstance(e, oai.Finish)] == [events[-1]]
    finish = events[-1]
    assert isinstance(finish, oai.Finish)
    assert finish.reason == "length" and finish.completion_tokens == 5


def test_it_sends_image_parts_as_data_urls(upstream) -> None:  # type: ignore[no-untyped-def]
    message = {
        "role": "user",
        "content": [
            oai.text_part("what is this?"),
            oai.image_part("data:image/png;base64,iVBORw0KGgo="),
        ],
    }
    events = _astream(upstream, "fake-echo", max_tokens=10, message=message)
    text = "".join(e.text for e in events if isinstance(e, oai.Delta))
    assert text.split() == ["text", "image_url", "data:image/png;base64,"]


@pytest.mark.parametrize(
    ("model", "error", "retryable"),
    [
        ("fake-500", oai.UpstreamServerError, True),
        ("fake-400", oai.UpstreamClientError, False),
        ("fake-malformed", oai.MalformedStream, True),
        ("fake-die", oai.MalformedStream, True),
    ],
)
def test_it_raises_typed_errors(
    upstream, model: str, error: type[Exception], retryable: bool
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as caught:
        _astream(upstream, model)
    assert getattr(caught.value, "retryable", None) is retryable


def test_it_times_out_a_silent_upstream(upstream) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with pytest.raises(oai.UpstreamTimeout):
        _astream(upstream, "fake-hang", read=0.5)
    assert time.monotonic() - started < 3


def test_it_reports_connection_refused_as_connect_error() -> None:
    async def connect() -> None:
        payload = oai.build_payload("fake", [{"role": "user", "content": "hi"}], {})
        async with (
            aiohttp.ClientSession() as http,
            oai.AsyncChatStream(
                http, "http://127.0.0.1:9/v1", payload, timeouts=oai.Timeouts(0.5, 0.5)
            ),
        ):
            pass

    with pytest.raises(oai.UpstreamConnectError):
        run_async(connect())


def test_it_aborts_the_upstream_request_when_closed(upstream) -> None:  # type: ignore[no-untyped-def]
    def disconnected() -> int:
        return int(
            httpx.get(upstream.base_url.removesuffix("/v1") + "/stats").json()["disconnected"]
        )

    async def read_one() -> None:
        payload = oai.build_payload(
            "fake-r50", [{"role": "user", "content": "hi"}], {"max_tokens": 500}
        )
        async with (
            aiohttp.ClientSession() as http,
            oai.AsyncChatStream(http, upstream.base_url, payload) as stream,
        ):
            async for item in stream.events():
                assert isinstance(item, list) and item
                break

    before = disconnected()
    run_async(read_one())
    deadline = time.monotonic() + 5
    while disconnected() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert disconnected() == before + 1


def test_it_rejects_streams_without_an_ending() -> None:
    unended = oai.SSEParser()
    assert [d.text for d in unended.feed('data: {"choices":[{"delta":{"content":"a"}}]}')] == ["a"]
    with pytest.raises(oai.MalformedStream):
        unended.finish()
    with pytest.raises(oai.MalformedStream):
        oai.SSEParser().feed("<html>oops</html>")
    parser = oai.SSEParser()
    for line in (": keepalive", 'data: {"choices":[{"delta":{"content":"a"}}]}', "data: [DONE]"):
        parser.feed(line)
    assert parser.done and parser.finish().reason == "stop"


def test_it_parses_lines_given_as_bytes_like_text() -> None:
    lines = [
        b": keepalive",
        b'data: {"choices":[{"delta":{"content":"\xc3\xa9"}}]}\r',
        b'data:{"choices":[{"delta":{"content":"b"},"finish_reason":"stop"}]}',
        b"data: [DONE]",
    ]
    parser = oai.SSEParser()
    deltas = [d.text for line in lines for d in parser.feed(line)]
    assert deltas == ["\u00e9", "b"]
    assert parser.done and parser.finish().reason == "stop"
    with pytest.raises(oai.MalformedStream):
        oai.SSEParser().feed(b"data: {not json")
