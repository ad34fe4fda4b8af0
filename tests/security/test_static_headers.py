"""Static files, which ServeStatic answers before Django's middleware would run, carry the same
security headers as every page: the site's Content-Security-Policy, nosniff, frame denial and
the referrer policy. (The files are those collectstatic wrote: make test runs it first.)"""

from __future__ import annotations

import httpx
from django.contrib.staticfiles.storage import staticfiles_storage
from django.test import Client

from config.asgi import application
from tests.helpers import run_async


def _fetch(*paths: str) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40003))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return [await client.get(path) for path in paths]

    return run_async(go())


def test_it_sends_the_pages_security_headers_with_static_files(db: None) -> None:
    page = Client().get("/accounts/login/")
    paths = [
        staticfiles_storage.url("img/favicon.svg"),  # an SVG opened by itself is a document
        staticfiles_storage.url("arena/arena.js"),
        "/static/arena/arena.js",  # the unhashed name collectstatic keeps beside the hashed one
    ]
    for path, response in zip(paths, _fetch(*paths), strict=True):
        assert response.status_code == 200, f"{path}: collectstatic first"
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert response.headers["Referrer-Policy"] == "same-origin", path
        policy = response.headers["Content-Security-Policy"]
        assert policy == page["Content-Security-Policy"], path
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
