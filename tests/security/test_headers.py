"""Security headers: a Content-Security-Policy that lets no inline script run, and pages that need
none; frame denial, nosniff and a referrer policy on every answer; secure cookies behind TLS."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from tests.factories import PASSWORD
from tests.security.fresh_settings import settings_in_a_fresh_process
from tests.security.walk import battle_of, callers, path_values, url_fill, url_patterns

pytestmark = pytest.mark.django_db

# Script types a browser does not execute (data blocks), which a CSP does not govern either.
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json", "text/template"}


def _policy(response: Any) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy", "")
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


class _InlineScripts(HTMLParser):
    """Collects what a strict script-src would block: inline <script> bodies, on* attributes and
    javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        data_block = (named.get("type") or "").lower() in DATA_SCRIPT_TYPES
        if tag == "script" and not named.get("src") and not data_block:
            self.found.append(f"inline <script> {self.getpos()}")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> {self.getpos()}")
            if name in {"href", "src", "action", "formaction"} and (value or "").strip().lower(
            ).startswith("javascript:"):  # fmt: skip
                self.found.append(f"<{tag} {name}=javascript:...> {self.getpos()}")


def test_every_page_has_a_strict_script_policy(world: dict[str, Any]) -> None:
    response = Client().get("/")
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no hosts
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    for directive, values in policy.items():
        assert "*" not in values and "http:" not in values and "https:" not in values, directive
    assert "'unsafe-eval'" not in " ".join(v for vs in policy.values() for v in vs)


def test_no_page_any_caller_gets_holds_an_inline_script(world: dict[str, Any]) -> None:
    """Every HTML page of the walk, as each caller gets it, runs only scripts from files: what
    the policy would block is not there to block."""
    battle = battle_of(world["bob"])
    values = path_values(world, battle)
    pages = 0
    found: list[str] = []
    for caller, client in callers(world).items():
        for route in url_patterns():
            path = url_fill(route, values)
            response = client.get(path)
            if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
                continue
            pages += 1
            assert response.get("Content-Security-Policy"), path
            parser = _InlineScripts()
            parser.feed(response.content.decode())
            found += [f"{path} as {caller}: {what}" for what in parser.found]
    assert pages > 40
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "path",
    ["/", "/leaderboard/", "/accounts/login/", "/healthz", "/no-such-page/", "/static/nothing.js"],
)
def test_every_answer_denies_framing_and_sniffing(db: None, path: str) -> None:
    response = Client().get(path)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_exports_and_images_are_not_sniffed_into_html(world: dict[str, Any]) -> None:
    battle = battle_of(world["bob"])
    bob = callers(world)["bob"]
    image = bob.get(f"/b/{battle.id}/image/")
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png" and image["X-Content-Type-Options"] == "nosniff"
    export = bob.get(f"/leaderboard/{world['snapshot'].id}/export.csv")
    assert export["X-Content-Type-Options"] == "nosniff"
    assert export["Content-Disposition"].startswith("attachment;")


@override_settings(SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_cookies_are_secure_and_session_cookies_http_only_behind_tls(bob: User) -> None:
    client = Client()
    login_page = client.get("/accounts/login/", secure=True)
    assert login_page.cookies["csrftoken"]["secure"]
    response = client.post(
        "/accounts/login/", {"username": "bob", "password": PASSWORD}, secure=True
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"


def _settings_in_a_fresh_process(**env: str) -> list[str]:
    """SESSION_COOKIE_SECURE, CSRF_COOKIE_SECURE and SECURE_PROXY_SSL_HEADER as config.settings
    reads them from this environment."""
    names = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER")
    return settings_in_a_fresh_process(*names, **env)


def test_cookies_are_secure_unless_the_operator_serves_plain_http() -> None:
    assert _settings_in_a_fresh_process()[:2] == ["True", "True"]
    assert _settings_in_a_fresh_process(LUDUS_SECURE_COOKIES="0")[:2] == ["False", "False"]
    assert _settings_in_a_fresh_process(DJANGO_DEBUG="1")[:2] == ["False", "False"]


def test_behind_a_proxy_the_forwarded_scheme_is_believed_only_when_configured() -> None:
    assert _settings_in_a_fresh_process()[2] == "None"
    behind = _settings_in_a_fresh_process(LUDUS_BEHIND_PROXY="1")[2]
    assert behind == "('HTTP_X_FORWARDED_PROTO', 'https')"
