"""HTTP through the ASGI app the product serves (config.asgi.application): static files hashed,
compressed and cached for good; request bodies past the limit get 413 before they are stored, a
chunked body within it reaches Django whole; slow readers of streamed downloads never take the
threads that serve everything else; the requests of a process share one pool of Redis connections
for the cache (sessions, rate limits), not a new connection each. (The static files are those collectstatic wrote: make test
runs it first.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.asgi import application
from tests.helpers import run_async

CHUNKS = 200  # far more than a2wsgi queues for a reader: a stalled download holds its thread


def _download(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse((b"x" * 1024 for _ in range(CHUNKS)), content_type="text/plain")


def _page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("page")


@csrf_exempt
def _echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{len(request.body)} {request.POST.get('field', '')}")


def _cache_pool(request: HttpRequest) -> HttpResponse:
    cache.get("probe")  # what a session or a rate limit does on every request
    client = cache._cache.get_client(write=False)  # type: ignore[attr-defined]
    return HttpResponse(str(id(client.connection_pool)))


urlpatterns = [
    path("cache-pool/", _cache_pool),
    path("download/", _download),
    path("page/", _page),
    path("echo/", _echo),
]
pytestmark = pytest.mark.urls(__name__)


def _client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40002))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=10)


async def _chunks(size: int, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


def test_it_serves_a_hashed_static_file_compressed_and_cached_for_good() -> None:
    url = staticfiles_storage.url("css/ludus.css")
    assert re.fullmatch(r"/static/css/ludus\.[0-9a-f]{12}\.css", url)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with _client() as client:
            gzipped = await client.get(url, headers={"Accept-Encoding": "gzip"})
            plain = await client.get(url, headers={"Accept-Encoding": "identity"})
            return gzipped, plain

    gzipped, plain = run_async(go())

    assert (gzipped.status_code, plain.status_code) == (200, 200), "collectstatic first"
    assert gzipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert int(gzipped.headers["content-length"]) < int(plain.headers["content-length"])
    assert gzipped.content == plain.content == staticfiles_storage.open("css/ludus.css").read()
    for response in (gzipped, plain):
        assert response.headers["cache-control"] == "max-age=315360000, public, immutable"
        assert "Accept-Encoding" in response.headers["vary"]
        assert response.headers["content-type"].startswith("text/css")


def test_it_refuses_a_body_past_the_limit_with_413(settings: Any) -> None:
    settings.REQUEST_BODY_MAX = 1000

    async def go() -> tuple[httpx.Response, ...]:
        async with _client() as client:
            declared = await client.post("/echo/", content=b"x" * 2000)
            chunked = await client.post("/echo/", content=_chunks(400, 4))
            within = await client.post("/echo/", content=b"x" * 900)
            return declared, chunked, within

    declared, chunked, within = run_async(go())

    assert (declared.status_code, chunked.status_code) == (413, 413)
    assert "larger than" in declared.text
    assert (within.status_code, within.text) == (200, "900 ")


def test_it_hands_django_a_chunked_body_whole() -> None:
    form = b"field=" + b"y" * 300_000

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(form), 50_000):
            yield form[start : start + 50_000]

    async def go() -> httpx.Response:
        async with _client() as client:
            return await client.post(
                "/echo/",
                content=body(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )

    response = run_async(go())

    assert response.status_code == 200
    assert response.text == f"{len(form)} {'y' * 300_000}"


def test_requests_share_one_pool_of_redis_connections_for_the_cache() -> None:
    async def go() -> list[str]:
        async with _client() as client:
            sequential = [(await client.get("/cache-pool/")).text for _ in range(10)]
            together = await asyncio.gather(*(client.get("/cache-pool/") for _ in range(10)))
            return sequential + [response.text for response in together]

    pools = run_async(go())

    assert len(pools) == 20 and len(set(pools)) == 1, pools


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40003),
        "server": ("testserver", 80),
    }


def test_slow_downloads_never_take_the_threads_that_serve_pages(settings: Any) -> None:
    """Every thread but one held by a stalled reader: one more download is refused with 503 and
    Retry-After, and pages are still served; a download ended gives its slot back."""
    settings.STREAMING_RESPONSES_MAX = settings.WEB_THREADS - 1

    async def go() -> tuple[int, httpx.Response, httpx.Response, httpx.Response]:
        release = asyncio.Event()
        stalled: list[asyncio.Event] = []
        received = [0]

        async def stalled_download() -> None:
            first_chunk = asyncio.Event()
            stalled.append(first_chunk)

            async def receive() -> dict[str, Any]:
                if not first_chunk.is_set():
                    return {"type": "http.request", "body": b"", "more_body": False}
                await release.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.body":
                    received[0] += len(message.get("body", b""))
                    first_chunk.set()
                    await release.wait()  # a reader that stops reading

            await application(_scope("/download/"), receive, send)

        readers = [
            asyncio.create_task(stalled_download()) for _ in range(settings.STREAMING_RESPONSES_MAX)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in stalled)), 10)
        async with _client() as client:
            refused = await asyncio.wait_for(client.get("/download/"), 10)
            page = await asyncio.wait_for(client.get("/page/"), 10)
            release.set()
            await asyncio.wait_for(asyncio.gather(*readers), 10)
            again = await asyncio.wait_for(client.get("/download/"), 10)
        return received[0], refused, page, again

    received, refused, page, again = run_async(go())

    assert (refused.status_code, refused.headers["retry-after"]) == (503, "10")
    assert (page.status_code, page.text) == (200, "page")
    assert received == settings.STREAMING_RESPONSES_MAX * CHUNKS * 1024
    assert (again.status_code, len(again.content)) == (200, CHUNKS * 1024)
