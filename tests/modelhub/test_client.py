"""The OpenAI-protocol client against a real (fake) upstream server over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from modelhub import client as oai
from tests.conftest import run_async


def _stream(
    upstream, model: str, max_tokens: int = 5, read: float = 5.0
) -> list[oai.Delta | oai.Finish]:  # type: ignore[no-untyped-def]
    with httpx.Client() as http:
        payload = oai.build_payload(
            model, [{"role": "user", "content": "hi"}], {"max_tokens": max_tokens}
        )
        with oai.ChatStream(
            http, upstream.base_url, payload, timeouts=oai.Timeouts(1, read)
        ) as stream:
            return list(stream.events())


def test_it_streams_deltas_and_one_finish_with_usage(upstream) -> None:  # type: ignore[no-untyped-def]
    events = _stream(upstream, "fake", max_tokens=5)
    deltas = [e.text for e in events if isinstance(e, oai.Delta)]
    assert "".join(deltas) == "t0 t1 t2 t3 t4 "
    finishes = [e for e in events if isinstance(e, oai.Finish)]
    assert len(finishes) == 1 and events[-1] is finishes[0]
    assert finishes[0].reason == "length"
    assert finishes[0].completion_tokens == 5


def test_it_sends_image_parts_as_data_urls(upstream) -> None:  # type: ignore[no-untyped-def]
    message = {
        "role": "user",
        "content": [
            oai.text_part("what is this?"),
            oai.image_part("data:image/png;base64,iVBORw0KGgo="),
        ],
    }
    with httpx.Client() as http:
        payload = oai.build_payload("fake-echo", [message], {"max_tokens": 10})
        with oai.ChatStream(http, upstream.base_url, payload) as stream:
            text = "".join(e.text for e in stream.events() if isinstance(e, oai.Delta))
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
        _stream(upstream, model)
    assert getattr(caught.value, "retryable", None) is retryable


def test_it_times_out_a_silent_upstream(upstream) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with pytest.raises(oai.UpstreamTimeout):
        _stream(upstream, "fake-hang", read=0.5)
    assert time.monotonic() - started < 3


def test_it_reports_connection_refused_as_connect_error() -> None:
    with httpx.Client() as http, pytest.raises(oai.UpstreamConnectError):
        payload = oai.build_payload("fake", [{"role": "user", "content": "hi"}], {})
        with oai.ChatStream(
            http, "http://127.0.0.1:9/v1", payload, timeouts=oai.Timeouts(0.5, 0.5)
        ):
            pass


def test_it_aborts_the_upstream_request_when_closed(upstream) -> None:  # type: ignore[no-untyped-def]
    before = httpx.get(upstream.base_url.removesuffix("/v1") + "/stats").json()["disconnected"]
    with httpx.Client() as http:
        payload = oai.build_payload(
            "fake-r50", [{"role": "user", "content": "hi"}], {"max_tokens": 500}
        )
        with oai.ChatStream(http, upstream.base_url, payload) as stream:
            for event in stream.events():
                assert isinstance(event, oai.Delta)
                break

    def disconnected() -> int:
        return int(
            httpx.get(upstream.base_url.removesuffix("/v1") + "/stats").json()["disconnected"]
        )

    deadline = time.monotonic() + 5
    while disconnected() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert disconnected() == before + 1


def test_it_rejects_streams_without_an_ending() -> None:
    with pytest.raises(oai.MalformedStream):
        list(oai.parse_sse_lines(iter(['data: {"choices":[{"delta":{"content":"a"}}]}'])))
    with pytest.raises(oai.MalformedStream):
        list(oai.parse_sse_lines(iter(["<html>oops</html>"])))
    events = list(
        oai.parse_sse_lines(
            iter([": keepalive", 'data: {"choices":[{"delta":{"content":"a"}}]}', "data: [DONE]"])
        )
    )
    assert [type(e) for e in events] == [oai.Delta, oai.Finish]


# -- the asyncio stream (what generation workers run) ---------------------------------------


def _astream(
    upstream, model: str, max_tokens: int = 5, read: float = 5.0
) -> list[oai.Delta | oai.Finish]:  # type: ignore[no-untyped-def]
    async def read_all() -> list[oai.Delta | oai.Finish]:
        payload = oai.build_payload(
            model, [{"role": "user", "content": "hi"}], {"max_tokens": max_tokens}
        )
        events: list[oai.Delta | oai.Finish] = []
        async with (
            httpx.AsyncClient() as http,
            oai.AsyncChatStream(
                http, upstream.base_url, payload, timeouts=oai.Timeouts(1, read)
            ) as stream,
        ):
            async for item in stream.events():
                events.extend(item if isinstance(item, list) else [item])
        return events

    return run_async(read_all())


def test_it_streams_the_same_events_on_asyncio(upstream) -> None:  # type: ignore[no-untyped-def]
    events = _astream(upstream, "fake", max_tokens=5)
    assert "".join(e.text for e in events if isinstance(e, oai.Delta)) == "t0 t1 t2 t3 t4 "
    assert [e for e in events if isinstance(e, oai.Finish)] == [events[-1]]
    finish = events[-1]
    assert isinstance(finish, oai.Finish)
    assert finish.reason == "length" and finish.completion_tokens == 5


@pytest.mark.parametrize(
    ("model", "error", "retryable"),
    [
        ("fake-500", oai.UpstreamServerError, True),
        ("fake-400", oai.UpstreamClientError, False),
        ("fake-malformed", oai.MalformedStream, True),
        ("fake-die", oai.MalformedStream, True),
    ],
)
def test_it_raises_typed_errors_on_asyncio(
    upstream, model: str, error: type[Exception], retryable: bool
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as caught:
        _astream(upstream, model)
    assert getattr(caught.value, "retryable", None) is retryable


def test_it_times_out_a_silent_upstream_on_asyncio(upstream) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(oai.UpstreamTimeout):
        _astream(upstream, "fake-hang", read=0.5)


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
