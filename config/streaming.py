"""A cap on the responses a web process streams at once (Django middleware).

A streamed response (the battle-log export) is iterated on the pool thread that made it, which
waits while a slow reader drains it (config.asgi). At most settings.STREAMING_RESPONSES_MAX stream
at once per process, fewer than its WEB_THREADS: the other threads keep serving pages and votes
however slowly downloads are read. Past the cap the client gets 503 with Retry-After. Listed last
in MIDDLEWARE, so the refusal passes every other middleware's response hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

RETRY_AFTER_S = 10


class _Slot:
    """The response's content, giving its slot back when Django closes the response (the
    download ended, the client left, or it never started)."""

    def __init__(self, content: Any, release: Callable[[], None]) -> None:
        self.content = iter(content)
        self.release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self.content)

    def close(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()


class StreamingResponseLimit:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.lock = threading.Lock()
        self.streaming = 0

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not response.streaming or getattr(response, "is_async", False):
            return response
        with self.lock:
            refused = self.streaming >= settings.STREAMING_RESPONSES_MAX
            if not refused:
                self.streaming += 1
        if refused:
            response.close()
            busy = HttpResponse(
                "Too many downloads in progress; try again in a few seconds.",
                status=503,
                content_type="text/plain",
            )
            busy["Retry-After"] = str(RETRY_AFTER_S)
            return busy
        response.streaming_content = _Slot(response.streaming_content, self._release)  # type: ignore[attr-defined]
        return response

    def _release(self) -> None:
        with self.lock:
            self.streaming -= 1
