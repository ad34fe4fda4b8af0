"""A small OpenAI-compatible server for tests and benchmarks: tokens at a fixed rate, and failures
on demand. The model name picks the behaviour:

  fake[-r<rate>]          streams max_tokens tokens "t0 t1 ..." at <rate> tokens/s (default 200)
  fake-500                answers HTTP 500          fake-400   answers HTTP 400
  fake-hang               sends headers, then nothing
  fake-malformed          sends one good delta, then a line that is not JSON
  fake-die                sends a few deltas, then drops the connection without [DONE]
  fake-echo               streams back the kinds of the last message's content parts
  fake-say                streams back the last message's text, word by word
  fake-nul                streams "t0\0 t1\0 ...": text a database cannot store as it is
  fake-tools              calls the calculator on the arithmetic of the last user message (its
                          tool_calls streamed in fragments), then answers with the tool's result;
                          without arithmetic, answers in text
  fake-tools-search       calls the search tool with the last user message
  fake-tools-malformed    calls the calculator with arguments that are not JSON
  fake-tools-unknown      calls a tool nobody registered ("teleport")
  fake-tools-schema       calls the calculator with arguments its schema refuses
  fake-tools-slow         calls the "sleep" tool (ludus_dev.tools) for 30 s
  fake-tools-endless      calls the calculator again after every result

A `-gzip` or `-deflate` in the name (fake-gzip, fake-r50-deflate) compresses the stream with that
content-coding, flushed after each event as a compressing proxy in front of a hosted endpoint does,
when the request accepts it.

GET /stats reports how many streams started and finished, how many clients went away mid-stream,
how many stream now and the most that streamed at once, how many connections were accepted and
how many streams went out compressed.

It is a bare asyncio protocol, not an ASGI app: the benchmarks run it beside the system under test
on the same cores, and a token here costs one timer callback and one socket write of pre-formatted
bytes (Starlette on uvicorn spent several times that per token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import threading
import zlib
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl

import uvloop

STATS: dict[str, int] = {
    "started": 0,
    "finished": 0,
    "disconnected": 0,
    "streaming": 0,
    "peak_streaming": 0,
    "connections": 0,
    "compressed": 0,
}
DOWN = {"value": False}

_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"
_ROUTES = {"/v1/models": "GET", "/v1/chat/completions": "POST", "/stats": "GET", "/down": "POST"}


def _rate(model: str) -> float:
    match = re.search(r"-r(\d+)", model)
    return float(match.group(1)) if match else 200.0


def _chunked(event: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(event), event)


_CODINGS = {"gzip": 31, "deflate": 15}  # zlib's wbits: a gzip wrapper, a zlib one (HTTP "deflate")


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class _Stream:
    """One streamed completion, paced by loop timers against its start time rather than by a task
    that sleeps: a token is one callback and one write, its JSON formatted from a template."""

    def __init__(
        self, conn: _Connection, model: str, n: int, echo: list[str], coding: str = ""
    ) -> None:
        self.conn = conn
        self.coding = coding
        self.encoder = zlib.compressobj(wbits=_CODINGS[coding]) if coding else None
        self.model = model
        self.n = n
        self.echo = echo
        self.interval = 1.0 / _rate(model)
        self.start = conn.loop.time()
        self.sent = 0
        self.timer: asyncio.TimerHandle | None = None
        self.malformed = model.startswith("fake-malformed")
        self.dies = model.startswith("fake-die")
        self.envelope = b'"id":"chatcmpl-fake","object":"chat.completion.chunk","model":%b' % (
            _dumps(model)
        )
        self.delta_head = b'data: {%b,"choices":[{"index":0,"delta":{"content":' % self.envelope

    def begin(self) -> None:
        STATS["started"] += 1
        STATS["streaming"] += 1
        STATS["peak_streaming"] = max(STATS["peak_streaming"], STATS["streaming"])
        coding = b"content-encoding: %b\r\n" % self.coding.encode() if self.coding else b""
        if self.coding:
            STATS["compressed"] += 1
        self.conn.transport.write(_STREAM_HEAD + coding + self.conn.connection_header + b"\r\n")
        if self.model.startswith("fake-hang"):
            return
        if self.n > 0:
            self.send()
        else:
            self.finish()

    def send(self) -> None:
        i = self.sent
        self.sent += 1
        content = _dumps(self.echo[i]) if self.echo else b'"t%d "' % i
        out = self.chunk(self.delta_head + content + b'},"finish_reason":null}]}\n\n')
        if self.malformed:
            self.conn.transport.write(out + self.chunk(b"data: {not json\n\n") + self.last())
            self.conn.end_stream()
        elif self.dies and i == 2:
            self.conn.transport.write(out)
            self.conn.transport.close()  # no last chunk: the client sees a cut-off body
        elif self.sent >= self.n:
            self.conn.transport.write(out)
            self.finish()
        else:
            self.conn.transport.write(out)
            self.timer = self.conn.loop.call_at(self.start + self.sent * self.interval, self.send)

    def finish(self) -> None:
        usage = {"prompt_tokens": 3, "completion_tokens": self.n, "total_tokens": self.n + 3}
        reason = b'"length"' if self.n else b'"stop"'
        events = (
            b'data: {%b,"choices":[{"index":0,"delta":{},"finish_reason":%b}]}\n\n'
            b'data: {%b,"choices":[],"usage":%b}\n\ndata: [DONE]\n\n'
            % (self.envelope, reason, self.envelope, _dumps(usage))
        )
        self.conn.transport.write(self.chunk(events) + self.last())
        STATS["finished"] += 1
        self.conn.end_stream()

    def chunk(self, event: bytes) -> bytes:
        """An HTTP chunk carrying these events (compressed and flushed, when compressing)."""
        if self.encoder is not None:
            event = self.encoder.compress(event) + self.encoder.flush(zlib.Z_SYNC_FLUSH)
        return _chunked(event)

    def last(self) -> bytes:
        """The end of the body: the compressed stream's end, then the last chunk."""
        if self.encoder is None:
            return _LAST_CHUNK
        return _chunked(self.encoder.flush()) + _LAST_CHUNK

    def abandon(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not (self.malformed or self.dies):
            STATS["disconnected"] += 1


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length request bodies, which is all its clients send."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.stream: _Stream | None = None
        self.keep_alive = True
        self.connection_header = b""
        self.accepts = ""  # the current request's accept-encoding

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        STATS["connections"] += 1
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.handle_requests()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            STATS["streaming"] -= 1
            self.stream.abandon()
            self.stream = None

    def handle_requests(self) -> None:
        # One request at a time: one that arrives while a stream runs waits for it to end.
        while self.stream is None and self.keep_alive:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            request_line, *lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", 0))
            if len(self.buffer) < head_end + 4 + length:
                return
            body = bytes(self.buffer[head_end + 4 : head_end + 4 + length])
            del self.buffer[: head_end + 4 + length]
            method, target, version = request_line.split(" ", 2)
            self.keep_alive = version == "HTTP/1.1" and headers.get("connection") != "close"
            self.connection_header = b"" if self.keep_alive else b"connection: close\r\n"
            if "transfer-encoding" in headers:
                self.keep_alive = False
                self.respond(HTTPStatus.NOT_IMPLEMENTED, b"chunked request bodies")
                return
            self.accepts = headers.get("accept-encoding", "")
            try:
                self.route(method, target, body)
            except Exception:
                self.respond(HTTPStatus.INTERNAL_SERVER_ERROR, b"Internal Server Error")

    def respond(self, status: HTTPStatus, body: Any) -> None:
        if isinstance(body, bytes):
            data, content_type = body, b"text/plain; charset=utf-8"
        else:
            data, content_type = _dumps(body), b"application/json"
        self.transport.write(
            b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n%b\r\n%b"
            % (
                status,
                status.phrase.encode(),
                content_type,
                len(data),
                self.connection_header,
                data,
            )
        )
        if not self.keep_alive:
            self.transport.close()

    def events(self, events: list[dict[str, Any]]) -> None:
        """Stream these chunks at once, then [DONE]."""
        STATS["started"] += 1
        body = b"".join(_chunked(b"data: %b\n\n" % _dumps(event)) for event in events)
        self.transport.write(
            _STREAM_HEAD
            + self.connection_header
            + b"\r\n"
            + body
            + _chunked(b"data: [DONE]\n\n")
            + _LAST_CHUNK
        )
        STATS["finished"] += 1
        if not self.keep_alive:
            self.transport.close()

    def end_stream(self) -> None:
        if self.stream is not None:
            STATS["streaming"] -= 1
        self.stream = None
        if self.keep_alive:
            self.handle_requests()
        else:
            self.transport.close()

    def route(self, method: str, target: str, body: bytes) -> None:
        path, _, query = target.partition("?")
        if path not in _ROUTES:
            self.respond(HTTPStatus.NOT_FOUND, b"Not Found")
        elif method != _ROUTES[path]:
            self.respond(HTTPStatus.METHOD_NOT_ALLOWED, b"Method Not Allowed")
        elif path == "/v1/models":
            if DOWN["value"]:
                self.respond(HTTPStatus.SERVICE_UNAVAILABLE, {"error": {"message": "down"}})
            else:
                self.respond(
                    HTTPStatus.OK, {"object": "list", "data": [{"id": "fake", "object": "model"}]}
                )
        elif path == "/stats":
            self.respond(HTTPStatus.OK, STATS)
        elif path == "/down":
            DOWN["value"] = dict(parse_qsl(query, keep_blank_values=True)).get("down", "1") == "1"
            self.respond(HTTPStatus.OK, DOWN)
        else:
            self.chat(json.loads(body))

    def chat(self, payload: dict[str, Any]) -> None:
        model = str(payload.get("model", "fake"))
        if DOWN["value"] or model.startswith("fake-500"):
            self.respond(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": {"message": "upstream exploded"}}
            )
            return
        if model.startswith("fake-400"):
            self.respond(HTTPStatus.BAD_REQUEST, {"error": {"message": "bad request"}})
            return
        n = int(payload.get("max_tokens") or 16)
        if not payload.get("stream"):
            text = " ".join(f"t{i}" for i in range(n))
            message = {"role": "assistant", "content": text}
            self.respond(
                HTTPStatus.OK,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3},
                },
            )
            return
        if model.startswith("fake-tools"):
            self.events(_tool_events(model, payload.get("messages") or []))
            return
        echo: list[str] = []
        if model.startswith("fake-echo"):
            content = (payload.get("messages") or [{}])[-1].get("content")
            kinds = (
                [part.get("type", "?") for part in content]
                if isinstance(content, list)
                else ["text"]
            )
            urls = [
                part["image_url"]["url"][:22]
                for part in content or []
                if isinstance(part, dict) and part.get("type") == "image_url"
            ]
            echo = [f"{k} " for k in kinds] + [f"{u} " for u in urls]
            n = len(echo)
        elif model.startswith("fake-say"):
            content = (payload.get("messages") or [{}])[-1].get("content")
            echo = [f"{word} " for word in str(content or "").split()]
            n = len(echo)
        elif model.startswith("fake-nul"):
            echo = [f"t{i}\x00 " for i in range(n)]
        wanted = re.search(r"-(gzip|deflate)\b", model)
        coding = wanted.group(1) if wanted and wanted.group(1) in self.accepts else ""
        self.stream = _Stream(self, model, n, echo, coding)
        self.stream.begin()


_ARITHMETIC = re.compile(r"[-+(]*\d[\d.\s()+\-*/%]*[+\-*/%][\d.\s()+\-*/%]*\d\)*")
_TOOL_CALLS = {
    "fake-tools-malformed": ("calculator", '{"expression": "1 +'),
    "fake-tools-unknown": ("teleport", '{"to": "mars"}'),
    "fake-tools-schema": ("calculator", '{"expr": 5}'),
    "fake-tools-slow": ("sleep", '{"seconds": 30}'),
    "fake-tools-endless": ("calculator", '{"expression": "1 + 1"}'),
}


def _tool_events(model: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chunks of a fake-tools answer: a tool call, or text after a tool's result."""
    last = messages[-1] if messages else {}
    content = last.get("content")
    text = content if isinstance(content, str) else ""
    call: tuple[str, str] | None = None
    if last.get("role") == "tool" and model != "fake-tools-endless":
        answer = f"The tool said: {text}"
    elif model in _TOOL_CALLS:
        call = _TOOL_CALLS[model]
    elif model == "fake-tools-search":
        call = ("search", json.dumps({"query": text}))
    elif match := _ARITHMETIC.search(text):
        call = ("calculator", json.dumps({"expression": match.group(0).strip()}))
    else:
        answer = "No tool is needed for that."
    envelope = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model}
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return envelope | {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}

    if call is None:
        words = [chunk({"content": f"{word} "}) for word in answer.split()]
        return [*words, chunk({}, "stop"), envelope | {"choices": [], "usage": usage}]
    name, arguments = call
    turn = sum(1 for m in messages if m.get("role") == "tool")
    head = {"index": 0, "id": f"call_fake{turn}", "type": "function"}
    half = len(arguments) // 2
    return [
        chunk({"tool_calls": [head | {"function": {"name": name, "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}),
        chunk({}, "tool_calls"),
        envelope | {"choices": [], "usage": usage},
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(
    sock: socket.socket, stop: asyncio.Future[None] | None = None, tls: ssl.SSLContext | None = None
) -> None:
    """Serve on a listening socket until `stop` resolves (forever without one); HTTPS with `tls`."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, sock=sock, ssl=tls)
    await (stop if stop is not None else loop.create_future())
    server.close()


class ServerThread:
    """Run the fake upstream in a background thread; `base_url` ends with /v1."""

    def __init__(self, port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls  # serve HTTPS with this context
        self.loop = uvloop.new_event_loop()
        self.stopped: asyncio.Future[None] = self.loop.create_future()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ServerThread:
        # Bound and listening before it returns: connections queue until the loop accepts them.
        sock = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(
            target=self.loop.run_until_complete,
            args=(serve(sock, self.stopped, self.tls),),
            daemon=True,
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        def resolve() -> None:
            if not self.stopped.done():
                self.stopped.set_result(None)

        self.loop.call_soon_threadsafe(resolve)
        self.thread.join(5)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible upstream")
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(socket.create_server(("127.0.0.1", args.port))))
