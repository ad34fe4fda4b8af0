"""Browser fixtures: the real ASGI app (HTTP + websockets) under uvicorn on the test database, a
Celery worker, the fake upstream, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from ludus_dev.browser import CHROMIUM_ARGS
from ludus_dev.browser import CHROMIUM_PATH as CHROMIUM
from ludus_dev.fake_upstream import free_port
from tests.helpers import ROOT, database_url_for_tests

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")


class AsgiServer:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def asgi_server(django_db_setup: None, django_db_blocker: object) -> Iterator[AsgiServer]:
    from django.conf import settings

    port = free_port()
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    env |= {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LUDUS_SECURE_COOKIES": "0",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    server = AsgiServer(port, proc)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code < 600:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.1)
    yield server
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
