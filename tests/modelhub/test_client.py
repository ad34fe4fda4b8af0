"""The OpenAI-protocol client against real servers over HTTP and HTTPS, directly and through a
proxy: the fake upstream, and small asyncio servers where a test needs one connection's story."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
import pytest

from ludus_dev.fake_upstream import ServerThread
from modelhub import client as oai
from tests.helpers import run_async, wait_for

SAFETY_S = 20  # a test that would hang fails instead (no test waits this long when it passes)


async def _read(
    http: aiohttp.ClientSession,
    base_url: str,
    model: str,
    max_tokens: int = 5,
    read: float = 5.0,
    message: dict | None = None,  # type: ignore[type-arg]
) -> list[oai.Delta | oai.Finish]:
    payload = oai.build_payload(
        model, [message or {"role": "user", "content": "hi"}], {"max_tokens": max_tokens}
    )
    events: list[oai.Delta | oai.Finish] = []
    stream = oai.AsyncChatStream(http, base_url, payload, timeouts=oai.Timeouts(1, read))
    async with asyncio.timeout(SAFETY_S):
        events.append(await stream.run(events.extend))
    return events


def _astream(base_url: str, model: str, **kwargs) -> list[oai.Delta | oai.Finish]:  # type: ignore[no-untyped-def]
    async def once() -> list[oai.Delta | oai.Finish]:
        async with oai.session() as http:
            return await _read(http, base_url, model, **kwargs)

    return run_async(once())


def _text(events: list[oai.Delta | oai.Finish]) -> str:
    return "".join(e.text for e in events if isinstance(e, oai.Delta))


def _stats(upstream: ServerThread) -> dict[str, int]:
    return dict(httpx.get(upstream.base_url.removesuffix("/v1") + "/stats").json())


def test_it_streams_deltas_and_one_finish_with_usage(upstream) -> None:  # type: ignore[no-untyped-def]
    events = _astream(upstream.base_url, "fake", max_tokens=5)
    assert _text(events) == "t0 t1 t2 t3 t4 "
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
    events = _astream(upstream.base_url, "fake-echo", max_tokens=10, message=message)
    assert _text(events).split() == ["text", "image_url", "data:image/png;base64,"]


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_it_reads_a_compressed_stream(upstream, coding: str) -> None:  # type: ignore[no-untyped-def]
    """Hosted endpoints (or a proxy in front of them) may compress an event stream, flushing
    after each event: the deltas still come one by one, decompressed."""
    before = _stats(upstream)["compressed"]
    events = _astream(upstream.base_url, f"fake-{coding}", max_tokens=4)
    assert _text(events) == "t0 t1 t2 t3 "
    assert isinstance(events[-1], oai.Finish) and events[-1].completion_tokens == 4
    assert _stats(upstream)["compressed"] == before + 1  # it did go out compressed


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
        _astream(upstream.base_url, model)
    assert getattr(caught.value, "retryable", None) is retryable
    if isinstance(caught.value, oai.UpstreamHTTPError):
        assert '"error"' in caught.value.body  # the error body is read and kept


def test_it_times_out_a_silent_upstream(upstream) -> None:  # type: ignore[no-untyped-def]
    """fake-hang sends its head, then nothing: the read timeout ends the stream, retryably (no
    token came); without it the read would wait for SAFETY_S and fail otherwise."""
    with pytest.raises(oai.UpstreamTimeout) as caught:
        _astream(upstream.base_url, "fake-hang", read=0.5)
    assert caught.value.retryable


def test_it_reports_connection_refused_as_connect_error() -> None:
    with pytest.raises(oai.UpstreamConnectError) as caught:
        _astream("http://127.0.0.1:9/v1", "fake")
    assert caught.value.retryable


def test_it_aborts_the_upstream_request_when_cancelled(upstream) -> None:  # type: ignore[no-untyped-def]
    async def read_one() -> None:
        async with oai.session() as http:
            first = asyncio.get_running_loop().create_future()
            payload = oai.build_payload(
                "fake-r50", [{"role": "user", "content": "hi"}], {"max_tokens": 500}
            )
            stream = oai.AsyncChatStream(http, upstream.base_url, payload)

            def on_deltas(deltas: list[oai.Delta]) -> None:
                if not first.done():
                    first.set_result(deltas)

            task = asyncio.create_task(stream.run(on_deltas))
            assert await first
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    before = _stats(upstream)
    run_async(read_one())
    # The upstream sees its client go mid-stream, and stops: 500 tokens were never all sent.
    wait_for(lambda: _stats(upstream)["disconnected"] == before["disconnected"] + 1)
    assert _stats(upstream)["finished"] == before["finished"]


# -- keep-alive, told by a server that numbers its connections --------------------------------

_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%b"
_EVENTS = (
    b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
# What the server does with the n-th request of its c-th connection: "answer", or "drop" (close
# the connection without an answer); it closes the connection after an answer with "answer-close".
Plan = Callable[[int, int], str]


async def _numbering_server(plan: Plan, served: list[int]) -> asyncio.Server:
    """A keep-alive server that answers each request with one short stream and records which
    connection (1, 2, ...) answered each one in `served`."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number, requests = connections, 0
        with contextlib.suppress(ConnectionError):
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                requests += 1
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                assert (await reader.readexactly(length)).startswith(b"{")
                action = plan(number, requests)
                if action == "drop":
                    writer.close()
                    return
                served.append(number)
                writer.write(_ANSWER % (len(_EVENTS), _EVENTS))
                await writer.drain()
                if action == "answer-close":
                    writer.close()
                    await writer.wait_closed()
                    return

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _serve_twice(plan: Plan, between: Callable[[], Awaitable[None]] | None = None) -> list[int]:
    """Two streams, one after the other, on one session; which connection served each."""
    served: list[int] = []

    async def scenario() -> None:
        server = await _numbering_server(plan, served)
        base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        try:
            async with oai.session() as http:
                assert _text(await _read(http, base_url, "any")) == "hi"
                if between is not None:
                    await between()
                assert _text(await _read(http, base_url, "any")) == "hi"
        finally:
            server.close()

    run_async(scenario())
    return served


def test_it_reuses_a_kept_alive_connection_for_the_next_stream() -> None:
    assert _serve_twice(lambda connection, request: "answer") == [1, 1]


def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    async def idle() -> None:
        await asyncio.sleep(0.2)  # the client's loop reads the server's close meanwhile

    served = _serve_twice(lambda connection, request: "answer-close", between=idle)
    assert served == [1, 2]


def test_a_kept_alive_connection_the_server_dropped_is_replaced_once() -> None:
    """A server may close an idle connection just as a request goes out on it. The request is
    sent again on a new connection, once."""

    def plan(connection: int, request: int) -> str:
        return "drop" if (connection, request) == (1, 2) else "answer"

    assert _serve_twice(plan) == [1, 2]


def test_a_new_connection_dropped_without_an_answer_is_a_connect_error() -> None:
    """Only a reused connection is tried again: a request that a fresh one fails is not sent a
    second time."""
    served: list[int] = []

    async def scenario() -> None:
        server = await _numbering_server(lambda connection, request: "drop", served)
        try:
            async with oai.session() as http:
                port = server.sockets[0].getsockname()[1]
                await _read(http, f"http://127.0.0.1:{port}/v1", "any")
        finally:
            server.close()

    with pytest.raises(oai.UpstreamConnectError) as caught:
        run_async(scenario())
    assert caught.value.retryable and served == []


# -- proxies ----------------------------------------------------------------------------------


async def _forwarding_proxy(seen: list[str]) -> asyncio.Server:
    """An HTTP proxy for plain-HTTP requests, one per connection: it records each request's
    absolute target in `seen` and forwards the request to its origin."""

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.removesuffix("\r\n\r\n").split("\r\n")
        method, target, version = request_line.split(" ")
        seen.append(target)
        url = urlsplit(target)
        origin_reader, origin_writer = await asyncio.open_connection(url.hostname, url.port)
        kept = [h for h in lines if not h.lower().startswith(("connection:", "proxy-"))]
        forwarded = [f"{method} {url.path} {version}", *kept, "Connection: close", "", ""]
        origin_writer.write("\r\n".join(forwarded).encode("latin-1"))
        await asyncio.gather(pipe(reader, origin_writer), pipe(origin_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _through_proxy_env(
    upstream: ServerThread, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> tuple[list[oai.Delta | oai.Finish], list[str]]:
    """Stream with HTTP_PROXY naming a forwarding proxy (and NO_PROXY as given): the events, and
    the targets the proxy forwarded."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    seen: list[str] = []

    async def scenario() -> list[oai.Delta | oai.Finish]:
        proxy = await _forwarding_proxy(seen)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}")
        if no_proxy:
            monkeypatch.setenv("NO_PROXY", no_proxy)
        try:
            async with oai.session() as http:
                return await _read(http, upstream.base_url, "fake", max_tokens=3)
        finally:
            proxy.close()

    return run_async(scenario()), seen


def test_it_streams_through_the_proxy_named_in_http_proxy(upstream, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    events, seen = _through_proxy_env(upstream, monkeypatch, no_proxy="")
    assert _text(events) == "t0 t1 t2 "
    assert seen == [upstream.base_url + "/chat/completions"]


def test_it_bypasses_the_proxy_for_a_no_proxy_host(upstream, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    events, seen = _through_proxy_env(upstream, monkeypatch, no_proxy="example.org,127.0.0.1")
    assert _text(events) == "t0 t1 t2 "
    assert seen == []


# -- TLS --------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_it_streams_over_tls_and_refuses_an_untrusted_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = ServerThread(tls=server_tls).start()
    https = server.base_url.replace("http://", "https://")
    try:

        async def read(trusted: ssl.SSLContext | None) -> list[oai.Delta | oai.Finish]:
            async with oai.session(trusted) as http:
                return await _read(http, https, "fake", max_tokens=3)

        events = run_async(read(ssl.create_default_context(cafile=str(cert))))
        assert _text(events) == "t0 t1 t2 "
        with pytest.raises(oai.UpstreamConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            run_async(read(None))  # the default context: the system's trust store
    finally:
        server.stop()


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
    with pytest.raises(oai.MalformedStream):
        oai.SSEParser().feed(b'data: {"choices":[{"delta":{"content":"\xff"}}]}')  # not UTF-8


def test_it_reads_chunks_that_python_s_json_reads_beyond_strict_json() -> None:
    """NaN and integers past 64 bits are not strict JSON, and the fast parser refuses them, but an
    upstream that writes its chunks with Python's json may send them: they still stream."""
    line = (
        b'data: {"created":123456789012345678901234,"x":NaN,"choices":[{"delta":{"content":"a"}}]}'
    )
    assert [d.text for d in oai.SSEParser().feed(line)] == ["a"]
