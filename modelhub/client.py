"""One client for every engine: the OpenAI chat-completions protocol over HTTP with SSE streaming.

Django-free. `stream_chat` yields typed events; closing the generator (or leaving the `with` block)
closes the HTTP response, which aborts the upstream request. Errors are typed so the pool can tell
"try another endpoint" (connect errors, 5xx, timeouts before the first token) from "the request is
bad" (4xx).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


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


class MalformedStream(UpstreamError):
    pass


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


@dataclass
class Delta:
    text: str


@dataclass
class Finish:
    reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def chat_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def build_payload(
    model: str, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool = True
) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    for key in ("temperature", "top_p", "max_tokens", "seed", "stop"):
        if params.get(key) is not None:
            payload[key] = params[key]
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    body = response.read().decode("utf-8", "replace")
    if response.status_code < 500:
        raise UpstreamClientError(response.status_code, body)
    raise UpstreamServerError(response.status_code, body)


def parse_sse_lines(lines: Iterator[str]) -> Iterator[Delta | Finish]:
    """Turn the `data:` lines of an OpenAI stream into Delta and Finish events.

    Exactly one Finish is yielded, after the last delta; a stream that ends without `[DONE]` or a
    finish_reason, or carries a line that is not JSON, raises MalformedStream.
    """
    finish: Finish | None = None
    done = False
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(":"):
            continue
        if not line.startswith("data:"):
            if line.startswith(("event:", "id:", "retry:")):
                continue
            raise MalformedStream(f"unexpected line in event stream: {line[:100]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise MalformedStream(f"chunk is not JSON: {data[:100]!r}") from None
        if not isinstance(chunk, dict):
            raise MalformedStream("chunk is not a JSON object")
        if "error" in chunk:
            raise UpstreamServerError(500, json.dumps(chunk["error"])[:500])
        usage = chunk.get("usage")
        for choice in chunk.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                yield Delta(delta)
            if choice.get("finish_reason"):
                finish = finish or Finish(reason=str(choice["finish_reason"]))
        if usage and isinstance(usage, dict):
            finish = finish or Finish(reason="")
            finish.prompt_tokens = usage.get("prompt_tokens")
            finish.completion_tokens = usage.get("completion_tokens")
    if finish is None and not done:
        raise MalformedStream("stream ended without [DONE] or a finish_reason")
    yield finish or Finish(reason="stop")


class ChatStream:
    """A streaming chat completion. Use as a context manager; `close()` aborts the upstream request."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        payload: dict[str, Any],
        api_key: str | None = None,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self._client = client
        self._request = client.build_request(
            "POST",
            chat_url(base_url),
            json=payload,
            headers=_headers(api_key),
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
        )
        self._response: httpx.Response | None = None
        self.started = time.monotonic()

    def __enter__(self) -> ChatStream:
        try:
            self._response = self._client.send(self._request, stream=True)
        except httpx.ConnectError as exc:
            raise UpstreamConnectError(f"cannot connect to {self._request.url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"timed out connecting to {self._request.url}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(f"{type(exc).__name__}: {exc}") from exc
        try:
            _raise_for_status(self._response)
        except UpstreamError:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()

    def events(self) -> Iterator[Delta | Finish]:
        assert self._response is not None, "use ChatStream as a context manager"
        try:
            yield from parse_sse_lines(self._response.iter_lines())
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("upstream stopped sending (read timeout)") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise MalformedStream(f"upstream connection broke: {exc}") from exc


def complete(
    client: httpx.Client,
    base_url: str,
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    api_key: str | None = None,
    timeouts: Timeouts = Timeouts(),
) -> dict[str, Any]:
    """A non-streaming chat completion (used by health probes). Returns the response JSON."""
    try:
        response = client.post(
            chat_url(base_url),
            json=build_payload(model, messages, params, stream=False),
            headers=_headers(api_key),
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
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
