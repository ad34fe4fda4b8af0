"""The request-body limit in front of Django (an ASGI middleware).

Django bounds the form fields it keeps in memory (DATA_UPLOAD_MAX_MEMORY_SIZE) but not the files
of a multipart upload, which it spools to disk whatever their size. Here a body past
settings.REQUEST_BODY_MAX gets 413 before any of it is stored: at once when its Content-Length
says so, or as it arrives when it is sent chunked. A chunked body within the limit is read first
and handed on with its length: Django's WSGI request reads exactly CONTENT_LENGTH bytes, and none
without it.
"""

from __future__ import annotations

import tempfile
from typing import Any

from django.conf import settings

IN_MEMORY = 1024 * 1024  # a chunked body past this spills to a temporary file while it is read
CHUNK = 64 * 1024


async def _too_large(send: Any, limit: int) -> None:
    text = f"Request body larger than {limit // (1024 * 1024)} MB.".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": text})


class RequestBodyLimit:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.REQUEST_BODY_MAX
        headers = dict(scope.get("headers", ()))
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await _too_large(send, limit)
            else:
                await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)  # no body
            return
        with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY) as body:
            length, more = 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                length += len(chunk)
                if length > limit:
                    await _too_large(send, limit)
                    return
                body.write(chunk)
                more = message.get("more_body", False)
            body.seek(0)
            scope = dict(scope)
            scope["headers"] = [
                *((k, v) for k, v in scope.get("headers", ()) if k != b"transfer-encoding"),
                (b"content-length", str(length).encode()),
            ]

            done = False

            async def replay() -> dict[str, Any]:
                nonlocal done
                if done:  # the body is handed on: what comes next is the disconnect
                    return dict(await receive())
                chunk = body.read(CHUNK)
                done = body.tell() >= length
                return {"type": "http.request", "body": chunk, "more_body": not done}

            await self.app(scope, replay, send)
