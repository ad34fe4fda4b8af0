"""Plain HTTP for the ASGI server through Django's WSGI handler: one thread hop per request.

Under ASGI, Django runs every synchronous middleware hook and the (synchronous) view through
`sync_to_async`, a hop to a worker thread and back each time: measured on the vote endpoint, about
2.5x the CPU per request of the same Django behind a WSGI server. This bridge reads the request body
on the event loop, runs the whole request (middleware, view, response) in one call on a thread
pool, and sends the collected response from the loop. Websockets stay with Channels on the loop.

Streaming responses (exports) are iterated on the same pool thread that made them (a Django
connection belongs to its thread) and each chunk is handed to the loop, waiting for it, so a slow
client holds back the producer instead of filling memory.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

# Request bodies up to this size stay in memory; larger ones (image uploads) spill to a file.
BODY_IN_MEMORY = 1024 * 1024
# Bodies past this size get 413 before they are stored anywhere: above Django's own upload limits
# (DATA_UPLOAD_MAX_MEMORY_SIZE, the image limit), which answer smaller oversized requests precisely.
MAX_BODY = 32 * 1024 * 1024

Message = dict[str, Any]
Send = Callable[[Message], Any]


def _environ(scope: dict[str, Any], body: IO[bytes], length: int) -> dict[str, Any]:
    script_name = scope.get("root_path", "").encode().decode("latin1")
    path_info = scope["path"].encode().decode("latin1")
    if script_name and path_info.startswith(script_name):
        path_info = path_info[len(script_name) :]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1] or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin1")
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    # The server has de-chunked the body; Django reads exactly CONTENT_LENGTH bytes.
    environ["CONTENT_LENGTH"] = str(length)
    return environ


async def _too_large(send: Send) -> None:
    text = f"Request body larger than {MAX_BODY // (1024 * 1024)} MB.".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": text})


class WsgiBridge:
    """An ASGI app (HTTP only) that serves a WSGI app on a pool of `threads` threads."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *, threads: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"WsgiBridge serves HTTP, not {scope['type']!r}")
        declared = dict(scope.get("headers", ())).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            await _too_large(send)
            return
        with tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY) as body:
            length = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    length += len(chunk)
                    if length > MAX_BODY:  # chunked, without a Content-Length
                        await _too_large(send)
                        return
                    body.write(chunk)
                more = message.get("more_body", False)
            body.seek(0)
            loop = asyncio.get_running_loop()
            environ = _environ(scope, body, length)
            result = await loop.run_in_executor(self.executor, self._run, environ, loop, send)
            if result is not None:  # collected in the thread: send from here
                start, content = result
                await send(start)
                await send({"type": "http.response.body", "body": content})

    def _run(
        self, environ: dict[str, Any], loop: asyncio.AbstractEventLoop, send: Send
    ) -> tuple[Message, bytes] | None:
        """On a pool thread: the whole request. Returns the response start and body, or None when
        the response streamed (already sent from this thread, chunk by chunk)."""
        started: list[Message] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [
                {
                    "type": "http.response.start",
                    "status": int(status.split(" ", 1)[0]),
                    "headers": [
                        (k.lower().encode("latin1"), v.encode("latin1")) for k, v in headers
                    ],
                }
            ]
            return None

        iterable = self.app(environ, start_response)
        try:
            if not getattr(iterable, "streaming", False):
                return started[0], b"".join(iterable)

            def forward(message: Message) -> None:
                asyncio.run_coroutine_threadsafe(send(message), loop).result()

            forward(started[0])
            for chunk in iterable:
                if chunk:
                    forward({"type": "http.response.body", "body": chunk, "more_body": True})
            forward({"type": "http.response.body", "body": b""})
            return None
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()  # Django's request_finished: connections go back to the pool
