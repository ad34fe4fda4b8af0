"""One client for every engine: the OpenAI chat-completions protocol over HTTP with SSE streaming.

Django-free. `AsyncChatStream` reads a streamed completion with aiohttp and hands its deltas to a
callback as they arrive, then returns its Finish; cancelling the task that runs it closes the
connection, which aborts the upstream request. `complete` makes one non-streaming request (the
health probe's one-token completion) with httpx. Errors are typed so the pool can tell "try another
endpoint" (connect errors, 5xx, timeouts before the first token) from "the request is bad" (4xx).

Both clients take proxies from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), accept
compressed answers (gzip, deflate) and verify TLS against the system's default trust store.
Neither follows redirects: a request carries the endpoint's API key and the user's prompt, and
both go to the endpoint's own URL or nowhere (a redirect is an UpstreamRedirect).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import orjson


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0  # to have a connection (TLS and any proxy included)
    read: float = 30.0  # between two reads of the answer, its head included


DEFAULT_TIMEOUTS = Timeouts()
ERROR_BODY_LIMIT = 65536


async def _note_reuse(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    if context.trace_request_ctx is not None:
        context.trace_request_ctx.reused = True


def session(ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    """The HTTP session for the streams of one event loop (make it on that loop; one per loop).

    Keep-alive connections are pooled per origin with no cap on their number (a worker streams
    hundreds at once; its threads bound that). `ssl_context` None: the default context."""
    reuse = aiohttp.TraceConfig()
    reuse.on_connection_reuseconn.append(_note_reuse)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=ssl_context if ssl_context else True),
        trust_env=True,  # HTTP(S)_PROXY and NO_PROXY, as curl and httpx read them
        timeout=aiohttp.ClientTimeout(total=None),  # each request sets its own
        trace_configs=[reuse],
    )


class UpstreamError(Exception):
    """Base class; `retryable` says whether another endpoint may succeed."""

    retryable = True


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamHTTPError(UpstreamError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"upstream answered HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class UpstreamClientError(UpstreamHTTPError):
    """4xx: the request itself is wrong; retrying elsewhere will not help (except 429)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(status, body)
        self.retryable = status in (408, 429)


class UpstreamServerError(UpstreamHTTPError):
    pass


class UpstreamRedirect(UpstreamHTTPError):
    """3xx: the endpoint's base URL points elsewhere; set it to the final address."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(status, f"redirect to {location[:200]!r} not followed")


class MalformedStream(UpstreamError):
    pass


@dataclass
class Delta:
    text: str


@dataclass
class ToolCall:
    """One call the model asked for, put together from its streamed fragments."""

    id: str = ""
    name: str = ""
    arguments: str = ""  # JSON text as the model wrote it: it may not parse


@dataclass
class Finish:
    reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)


def chat_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def build_payload(
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    stream: bool = True,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chat-completions request. `tools` (the protocol's function specs) and `tool_choice`
    ("auto", "none", "required" or a named function) are sent only when given."""
    payload: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    for key in ("temperature", "top_p", "max_tokens", "seed", "stop"):
        if params.get(key) is not None:
            payload[key] = params[key]
    if tools:
        payload["tools"] = tools
        payload["tool_choice"] = tool_choice or "auto"
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 300:
        return
    if response.status_code < 400:
        raise UpstreamRedirect(response.status_code, response.headers.get("location", ""))
    body = response.read().decode("utf-8", "replace")
    if response.status_code < 500:
        raise UpstreamClientError(response.status_code, body)
    raise UpstreamServerError(response.status_code, body)


class SSEParser:
    """Incremental parser for the `data:` lines of an OpenAI stream (one instance per stream).

    `feed` takes one line (without its line ending) and returns the deltas it carried; `finish`
    returns the one Finish event once the input is over. A stream that ends without `[DONE]` or a
    finish_reason, or carries a line that is not JSON, raises MalformedStream.

    `tool_calls` deltas are put together by their index (the id and name come once, the
    arguments in fragments) and handed over whole with the Finish.
    """

    __slots__ = ("_calls", "_finish", "done")

    def __init__(self) -> None:
        self._finish: Finish | None = None
        self._calls: dict[int, ToolCall] = {}
        self.done = False  # `[DONE]` was seen: nothing after it counts

    def feed(self, raw: str | bytes) -> list[Delta]:
        line = raw.strip()
        if not line:
            return []
        if isinstance(line, bytes):
            if line[:6] == b"data: " and line[6:7] == b"{":
                return self._chunk(line[6:])  # the common case: one JSON chunk
            line = line.decode("utf-8", "replace")
        if line.startswith(":"):
            return []
        if not line.startswith("data:"):
            if line.startswith(("event:", "id:", "retry:")):
                return []
            raise MalformedStream(f"unexpected line in event stream: {line[:100]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return []
        return self._chunk(data)

    def _chunk(self, data: str | bytes) -> list[Delta]:
        try:
            # orjson: a quarter of json's time on a chunk, and one chunk comes per token. What it
            # refuses and Python's json reads (NaN, integers past 64 bits) gets json's reading.
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            try:
                chunk = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise MalformedStream(f"chunk is not JSON: {data[:100]!r}") from None
        if not isinstance(chunk, dict):
            raise MalformedStream("chunk is not a JSON object")
        if "error" in chunk:
            raise UpstreamServerError(500, json.dumps(chunk["error"])[:500])
        deltas: list[Delta] = []
        for choice in chunk.get("choices") or ():
            message = choice.get("delta") or {}
            delta = message.get("content")
            if delta:
                deltas.append(Delta(delta))
            if message.get("tool_calls"):
                self._tool_call_deltas(message["tool_calls"])
            if choice.get("finish_reason"):
                self._finish = self._finish or Finish(reason=str(choice["finish_reason"]))
        usage = chunk.get("usage")
        if usage and isinstance(usage, dict):
            self._finish = self._finish or Finish(reason="")
            self._finish.prompt_tokens = usage.get("prompt_tokens")
            self._finish.completion_tokens = usage.get("completion_tokens")
        return deltas

    def _tool_call_deltas(self, parts: Any) -> None:
        if not isinstance(parts, list):
            raise MalformedStream("tool_calls is not a list")
        for part in parts:
            if not isinstance(part, dict):
                raise MalformedStream("a tool call delta is not an object")
            index = part.get("index", len(self._calls))
            call = self._calls.setdefault(index if isinstance(index, int) else -1, ToolCall())
            if part.get("id"):
                call.id = str(part["id"])
            function = part.get("function") or {}
            if isinstance(function, dict):
                call.name += str(function.get("name") or "")
                arguments = function.get("arguments")
                if arguments:
                    # A server that sends the arguments as an object rather than JSON text.
                    call.arguments += (
                        arguments if isinstance(arguments, str) else json.dumps(arguments)
                    )

    def finish(self) -> Finish:
        if self._finish is None and not self.done:
            raise MalformedStream("stream ended without [DONE] or a finish_reason")
        finish = self._finish or Finish(reason="stop")
        finish.tool_calls = [self._calls[i] for i in sorted(self._calls)]
        return finish


class AsyncChatStream:
    """A streaming chat completion on asyncio (a worker runs all its streams on one event loop).

    Each piece of the body is split into lines and parsed as it is read; JSON chunks are parsed
    from bytes, without decoding every line to text first."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        payload: dict[str, Any],
        api_key: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self._http = http
        self._url = chat_url(base_url)
        self._body = json.dumps(payload).encode()
        self._headers = _headers(api_key)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect, sock_read=timeouts.read
        )

    async def run(self, on_deltas: Callable[[list[Delta]], None]) -> Finish:
        """Stream the completion: `on_deltas` gets the deltas of each piece of the body (often
        one event) and must not block. Returns the Finish; raises the typed errors above."""
        response = await self._open()
        parser = SSEParser()
        rest = b""
        try:
            async for chunk in response.content.iter_any():
                if b"\r" in chunk:  # SSE allows CR and CRLF endings; blank lines are ignored
                    chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                deltas: list[Delta] = []
                for line in lines:
                    if line:
                        deltas.extend(parser.feed(line))
                        if parser.done:  # [DONE]: the answer is complete, whatever follows
                            break
                if deltas:
                    on_deltas(deltas)
                if parser.done:
                    break
        except aiohttp.ServerTimeoutError as exc:
            response.close()
            raise UpstreamTimeout("upstream stopped sending (read timeout)") from exc
        except aiohttp.ClientError as exc:  # cut short, or a body that does not decompress
            response.close()
            raise MalformedStream(f"upstream connection broke: {exc}") from exc
        except BaseException:
            # Cancelled (a stop), or the stream or a callback failed: closing the connection is
            # what tells the upstream to stop generating.
            response.close()
            raise
        # The connection is kept for the next stream when the body was read to its end (the last
        # chunk came with [DONE]), closed otherwise.
        response.release()
        if rest and not parser.done:
            deltas = parser.feed(rest)
            if deltas:
                on_deltas(deltas)
        return parser.finish()

    async def _open(self) -> aiohttp.ClientResponse:
        """Send the request; returns once the head of the answer came, with a status below 400.

        A server may close an idle keep-alive connection just as a request goes out on it: the
        request is then sent again on a new connection, once. aiohttp retries only idempotent
        methods by itself; a POST that no byte of an answer came back for is safe to send again."""
        for attempt in (1, 2):
            trace = SimpleNamespace(reused=False)
            try:
                response = await self._http.post(
                    self._url,
                    data=self._body,
                    headers=self._headers,
                    timeout=self._timeout,
                    trace_request_ctx=trace,
                    allow_redirects=False,
                )
            except aiohttp.ConnectionTimeoutError as exc:
                raise UpstreamConnectError(f"no connection to {self._url} in time") from exc
            except aiohttp.ServerTimeoutError as exc:
                raise UpstreamTimeout(f"timed out waiting for {self._url}") from exc
            except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS, proxy
                raise UpstreamConnectError(f"cannot connect to {self._url}: {exc}") from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if trace.reused and attempt == 1:
                    continue
                raise UpstreamConnectError(f"{type(exc).__name__}: {exc}") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamConnectError(f"{type(exc).__name__}: {exc}") from exc
            break
        if response.status < 300:
            return response
        if response.status < 400:
            response.close()
            raise UpstreamRedirect(response.status, response.headers.get("Location", ""))
        body = await _error_body(response)
        if response.status < 500:
            raise UpstreamClientError(response.status, body)
        raise UpstreamServerError(response.status, body)


async def _error_body(response: aiohttp.ClientResponse) -> str:
    """The first ERROR_BODY_LIMIT bytes of an error answer, as text."""
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_any():
            parts.append(chunk[: ERROR_BODY_LIMIT - size])
            size += len(parts[-1])
            if size >= ERROR_BODY_LIMIT:
                break
    except (aiohttp.ClientError, TimeoutError) as exc:
        response.close()
        return f"({type(exc).__name__} reading the error body)"
    response.release()
    return b"".join(parts).decode("utf-8", "replace")


def complete(
    client: httpx.Client,
    base_url: str,
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    api_key: str | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> dict[str, Any]:
    """A non-streaming chat completion (used by health probes). Returns the response JSON."""
    try:
        response = client.post(
            chat_url(base_url),
            json=build_payload(model, messages, params, stream=False),
            headers=_headers(api_key),
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
            follow_redirects=False,
        )
    except httpx.ConnectError as exc:
        raise UpstreamConnectError(str(exc)) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(str(exc)) from exc
    _raise_for_status(response)
    try:
        result = response.json()
    except ValueError:
        raise MalformedStream("response is not JSON") from None
    if not isinstance(result, dict) or not result.get("choices"):
        raise MalformedStream("response has no choices")
    return result


def image_part(data_url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}
