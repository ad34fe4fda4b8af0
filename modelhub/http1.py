"""A small HTTP/1.1 client for streamed responses on asyncio: how a generation worker reads its
upstreams.

A worker reads hundreds of token streams on one event loop. aiohttp hands every network read
through its stream reader to a task that wakes for it: 51-63 µs of the worker's CPU per token at
128 streams of 20 tokens/s, measured on these machines. Here the connection's protocol passes
each piece of the body straight to a callback from the loop's read (29-33 µs). httptools, the C
parser uvicorn serves HTTP with, parses the responses (chunked, sized or ended by the close);
keep-alive connections are pooled per origin, with TLS where the URL says https.

    exchange = await pool.request("POST", url, headers, body, Timeouts(connect=5, read=30))
    exchange.status, exchange.headers
    await exchange.stream(on_body)  # or: await exchange.read(limit)
    exchange.close()  # early: closes the connection, which aborts the request upstream

Errors: `ConnectFailed` (no connection, or no TLS), `ReadTimeout` (nothing for `read` seconds),
`ConnectionBroken` (closed mid-response, or not HTTP). An exception raised by `on_body` ends the
exchange (closing its connection) and comes out of `stream`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

IDLE_TIMEOUT_S = 15.0  # as aiohttp: servers close idle keep-alive connections after a while
MAX_IDLE_PER_ORIGIN = 256


class HTTPError(Exception):
    pass


class ConnectFailed(HTTPError):
    pass


class ReadTimeout(HTTPError):
    pass


class ConnectionBroken(HTTPError):
    pass


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


Origin = tuple[str, str, int]  # scheme, host, port


class Exchange(asyncio.Protocol):
    """One connection, and the answer being read on it. It serves one request at a time, and goes
    back to its pool when its caller has read an answer to the end."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received = False  # any byte of the current answer
        self.keep_alive = False
        self.closed = False
        self._busy = False  # a request is in flight (its answer not yet ended)
        self._complete = False  # the answer ended where HTTP says it does
        self._head: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._early: list[bytes] = []  # body read before the caller gave a sink
        self._last_read = 0.0
        self._read_timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._busy:  # idle, or ended early: nothing more is expected here
            self.close()
            return
        self._last_read = self.loop.time()
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if self._busy:  # not a sink's error, which _fail has already handed over
                self._fail(ConnectionBroken(f"reading the upstream's answer failed: {exc}"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroken(f"the upstream's answer is not HTTP/1.1: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:  # closed by the server (close() has forgotten it otherwise)
            self.closed = True
            self.pool._forget(self)
        if not self._busy:
            return
        if self._head is not None and self._head.done() and self._sized_by_close():
            self._complete = True
            self._finish()  # an answer without a length ends with its connection
            return
        reason = f": {exc}" if exc else ""
        self._fail(ConnectionBroken(f"the upstream closed the connection mid-answer{reason}"))

    # -- httptools callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._sink is None:
            self._early.append(body)
            return
        try:
            self._sink(body)
        except BaseException as exc:
            self._fail(exc)
            raise

    def on_message_complete(self) -> None:
        self._complete = True
        self._finish()

    # -- the exchange -------------------------------------------------------------------------
    async def _send(self, request: bytes, read_timeout: float) -> None:
        """Write a request and wait for the head of its answer."""
        assert self.transport is not None and not self._busy
        self.status, self.headers, self.received, self._complete = 0, {}, False, False
        self._early, self._sink, self._busy = [], None, True
        self._head, self._done = self.loop.create_future(), self.loop.create_future()
        for future in (self._head, self._done):
            future.add_done_callback(_retrieve)  # failed futures nobody awaits stay quiet
        self._read_timeout = read_timeout
        self._last_read = self.loop.time()
        self._timer = self.loop.call_later(read_timeout, self._check_read)
        self.transport.write(request)
        await self._head

    async def stream(self, on_body: Callable[[bytes], None]) -> None:
        """Pass each piece of the body to `on_body` (from the loop's read: it must not block)
        until the answer ends. Cancelling this closes the connection."""
        assert self._done is not None, "send a request first"
        self._sink = on_body
        early, self._early = self._early, []
        try:
            for chunk in early:
                on_body(chunk)
            await self._done
        except asyncio.CancelledError:
            self.close()
            raise
        except BaseException as exc:
            self._fail(exc)
            raise
        if self.keep_alive and self._complete and not self.closed:
            self.pool._release(self)
        else:
            self.close()

    async def read(self, limit: int = 65536) -> bytes:
        """The body (its first `limit` bytes; the rest is read and dropped)."""
        parts: list[bytes] = []
        size = 0

        def keep(chunk: bytes) -> None:
            nonlocal size
            if size < limit:
                parts.append(chunk[: limit - size])
                size += len(parts[-1])

        await self.stream(keep)
        return b"".join(parts)

    def end(self) -> None:
        """The caller has what it needs (a stream's last event): end the answer once the loop
        is done with the current read. If HTTP's end of the answer was in that read, the
        connection can be kept; otherwise it is closed."""
        self.loop.call_soon(self._end_now, self._done)

    def _end_now(self, done: asyncio.Future[None] | None) -> None:
        if self._busy and self._done is done:  # still that answer, not a later request's
            self.keep_alive = False
            self._finish()

    def close(self) -> None:
        """Close the connection: the server sees the client go (an upstream stops generating)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.keep_alive = False
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.pool._forget(self)
        if self._busy:
            self._fail(ConnectionBroken("closed by the client"))

    # -- internals ----------------------------------------------------------------------------
    def _sized_by_close(self) -> bool:
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return "content-length" not in self.headers and not chunked

    def _check_read(self) -> None:
        idle = self.loop.time() - self._last_read
        if idle >= self._read_timeout:
            self._timer = None
            self._fail(ReadTimeout(f"the upstream sent nothing for {self._read_timeout:g} s"))
        else:
            self._timer = self.loop.call_later(self._read_timeout - idle, self._check_read)

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._busy = False
        if not (self.keep_alive and self._complete):
            self.close()
        if self._head is not None and not self._head.done():  # ended before its head
            self._head.set_exception(ConnectionBroken("the answer ended before its head"))
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._busy = False
        for future in (self._head, self._done):
            if future is not None and not future.done():
                future.set_exception(exc)
        self.close()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class Pool:
    """Keep-alive connections per origin, for one event loop."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self._idle: dict[Origin, list[tuple[Exchange, float]]] = {}

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        timeouts: Timeouts = Timeouts(),
    ) -> Exchange:
        """Send a request; returns once the head of the answer came. A kept-alive connection
        that the server had closed meanwhile is replaced by a new one, once."""
        origin, request = _request(method, url, headers, body)
        while True:
            exchange = self._take(origin)
            reused = exchange is not None
            if exchange is None:
                exchange = await self._connect(origin, timeouts.connect)
            try:
                await exchange._send(request, timeouts.read)
            except ConnectionBroken:
                if reused and not exchange.received:
                    continue
                raise
            except BaseException:  # cancelled, or timed out, waiting for the head
                exchange.close()
                raise
            return exchange

    async def _connect(self, origin: Origin, timeout: float) -> Exchange:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            tls = self.ssl_context or ssl.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, exchange = await loop.create_connection(
                    lambda: Exchange(self, origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise ConnectFailed(f"no connection to {host}:{port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        return exchange

    def _take(self, origin: Origin) -> Exchange | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            exchange, since = idle.pop()
            if not exchange.closed and now - since < IDLE_TIMEOUT_S:
                return exchange
            exchange.close()
        return None

    def _release(self, exchange: Exchange) -> None:
        idle = self._idle.setdefault(exchange.origin, [])
        idle.append((exchange, time.monotonic()))
        if len(idle) > MAX_IDLE_PER_ORIGIN:
            oldest, _ = idle.pop(0)
            oldest.close()

    def _forget(self, exchange: Exchange) -> None:
        idle = self._idle.get(exchange.origin)
        if idle:
            self._idle[exchange.origin] = [item for item in idle if item[0] is not exchange]

    def close(self) -> None:
        for idle in list(self._idle.values()):
            for exchange, _ in idle:
                exchange.close()
        self._idle.clear()


def _request(method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[Origin, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return (parts.scheme, host, port), head + body
