"""The OpenAI-protocol client against a real (fake) upstream server over HTTP and HTTPS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
from pathlib import Path

import httpx
import pytest

from ludus_dev.fake_upstream import ServerThread
from modelhub import client as oai
from modelhub import http1
from tests.conftest import run_async


async def _read(
    http: http1.Pool,
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
    events.append(await stream.run(events.extend))
    return events


def _astream(upstream, model: str, **kwargs) -> list[oai.Delta | oai.Finish]:  # type: ignore[no-untyped-def]
    async def once() -> list[oai.Delta | oai.Finish]:
        http = http1.Pool()
        try:
            return await _read(http, upstream.base_url, model, **kwargs)
        finally:
            http.close()

    return run_async(once())


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
    if isinstance(caught.value, oai.UpstreamHTTPError):
        assert '"error"' in caught.value.body  # the error body is read and kept


def test_it_times_out_a_silent_upstream(upstream) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with pytest.raises(oai.UpstreamTimeout):
        _astream(upstream, "fake-hang", read=0.5)
    assert time.monotonic() - started < 3


def test_it_reports_connection_refused_as_connect_error() -> None:
    async def connect() -> None:
        await _read(http1.Pool(), "http://127.0.0.1:9/v1", "fake")

    with pytest.raises(oai.UpstreamConnectError):
        run_async(connect())


def test_it_aborts_the_upstream_request_when_cancelled(upstream) -> None:  # type: ignore[no-untyped-def]
    def disconnected() -> int:
        return int(
            httpx.get(upstream.base_url.removesuffix("/v1") + "/stats").json()["disconnected"]
        )

    async def read_one() -> None:
        http = http1.Pool()
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
        assert not http._idle.get(("http", "127.0.0.1", upstream.port))  # not kept: closed

    before = disconnected()
    run_async(read_one())
    deadline = time.monotonic() + 5
    while disconnected() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert disconnected() == before + 1


def test_it_reuses_a_kept_alive_connection_for_the_next_stream(upstream) -> None:  # type: ignore[no-untyped-def]
    async def two() -> tuple[object, object, int]:
        http = http1.Pool()
        origin = ("http", "127.0.0.1", upstream.port)
        await _read(http, upstream.base_url, "fake", max_tokens=3)
        first = http._idle[origin][0][0]
        events = await _read(http, upstream.base_url, "fake", max_tokens=3)
        second = http._idle[origin][0][0]
        http.close()
        return first, second, len(events)

    first, second, count = run_async(two())
    assert first is second and count == 4  # three deltas and the finish, on one connection


def test_an_idle_connection_the_server_closes_leaves_the_pool() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%b"
    events = b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
    events += b"data: [DONE]\n\n"

    async def scenario() -> tuple[int, int]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(answer % (len(events), events))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()  # an idle keep-alive connection, closed by the server

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        origin = ("http", "127.0.0.1", port)
        http = http1.Pool()
        try:
            await _read(http, f"http://127.0.0.1:{port}/v1", "any")
            kept = len(http._idle.get(origin, []))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if not http._idle.get(origin):
                    break
            return kept, len(http._idle.get(origin, []))
        finally:
            http.close()
            server.close()

    assert run_async(scenario()) == (1, 0)


def test_a_kept_alive_connection_the_server_dropped_is_replaced_once() -> None:
    """A server may close an idle connection just as a request goes out on it. The request is
    sent again on a new connection, once; a new connection that fails is an error."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%b"
    events = b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
    events += b"data: [DONE]\n\n"
    served: list[int] = []  # which connection answered each request

    async def scenario() -> tuple[list[oai.Delta | oai.Finish], list[oai.Delta | oai.Finish]]:
        connections = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            number = connections
            requests = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                requests += 1
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                assert (await reader.readexactly(length)).startswith(b"{")
                if number == 1 and requests == 2:
                    writer.close()  # the second request on the first connection: dropped
                    return
                served.append(number)
                writer.write(answer % (len(events), events))
                await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        http = http1.Pool()
        try:
            first = await _read(http, f"http://127.0.0.1:{port}/v1", "any")
            second = await _read(http, f"http://127.0.0.1:{port}/v1", "any")
        finally:
            http.close()
            server.close()
        return first, second

    first, second = run_async(scenario())
    assert [e.text for e in first if isinstance(e, oai.Delta)] == ["hi"]
    assert [e.text for e in second if isinstance(e, oai.Delta)] == ["hi"]
    assert served == [1, 2]


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

        async def trusted() -> list[oai.Delta | oai.Finish]:
            http = http1.Pool(ssl.create_default_context(cafile=str(cert)))
            try:
                return await _read(http, https, "fake", max_tokens=3)
            finally:
                http.close()

        events = run_async(trusted())
        assert "".join(e.text for e in events if isinstance(e, oai.Delta)) == "t0 t1 t2 "
        with pytest.raises(oai.UpstreamConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            run_async(_read(http1.Pool(ssl.create_default_context()), https, "fake"))
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
