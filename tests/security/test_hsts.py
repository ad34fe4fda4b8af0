"""Strict-Transport-Security: while cookies are secure (the site is served over TLS), pages and
static files tell browsers to use HTTPS only, for LUDUS_HSTS_SECONDS (a year unless set)."""

from __future__ import annotations

import httpx
from django.contrib.staticfiles.storage import staticfiles_storage
from django.test import Client

from config.asgi import application
from tests.helpers import run_async
from tests.security.fresh_settings import settings_in_a_fresh_process

A_YEAR = "max-age=31536000"


def _hsts_seconds_in_a_fresh_process(**env: str) -> int:
    return int(settings_in_a_fresh_process("SECURE_HSTS_SECONDS", **env)[0])


def test_it_sends_hsts_on_pages_over_tls(db: None) -> None:
    assert Client().get("/accounts/login/", secure=True)["Strict-Transport-Security"] == A_YEAR
    assert "Strict-Transport-Security" not in Client().get("/accounts/login/")


def test_it_sends_hsts_with_static_files() -> None:
    url = staticfiles_storage.url("arena/arena.js")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40004))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            return await client.get(url)

    response = run_async(go())
    assert response.status_code == 200, "collectstatic first"
    assert response.headers["Strict-Transport-Security"] == A_YEAR


def test_it_sends_hsts_only_while_cookies_are_secure_for_as_long_as_configured() -> None:
    assert _hsts_seconds_in_a_fresh_process() == 31_536_000
    assert _hsts_seconds_in_a_fresh_process(DJANGO_DEBUG="1") == 0
    assert _hsts_seconds_in_a_fresh_process(LUDUS_SECURE_COOKIES="0") == 0
    assert _hsts_seconds_in_a_fresh_process(LUDUS_HSTS_SECONDS="600") == 600
