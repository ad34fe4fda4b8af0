"""Every page carries the site's links, the same on each, with the page's own marked current: a
visitor on the leaderboard or the login page can reach the arena's three modes in one click."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db

SECTIONS = {"/": "Arena", "/side-by-side/": "Side-by-side", "/chat/": "Direct chat"}
SECTIONS |= {"/leaderboard/": "Leaderboard"}


class NavLinks(HTMLParser):
    """The links of the page's <nav>: href -> (text, marked current)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, tuple[str, bool]] = {}
        self._in_nav = False
        self._href: str | None = None
        self._current = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "nav":
            self._in_nav = True
        elif tag == "a" and self._in_nav:
            self._href = dict(attrs)["href"]
            self._current = dict(attrs).get("aria-current") == "page"

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links[self._href] = (data.strip(), self._current)
            self._href = None


def nav(client: Client, path: str) -> dict[str, tuple[str, bool]]:
    response = client.get(path)
    assert response.status_code == 200, path
    parser = NavLinks()
    parser.feed(response.content.decode())
    return parser.links


@pytest.mark.parametrize(
    "path",
    ["/", "/side-by-side/", "/chat/", "/leaderboard/", "/accounts/login/", "/accounts/signup/"],
)
def test_a_visitor_finds_every_section_on_every_page(arena_models: list[Any], path: str) -> None:
    links = nav(Client(), path)
    for href, text in SECTIONS.items():
        assert links[href][0] == text, (path, href)
    assert links["/accounts/login/"][0] == "Log in"
    assert links["/accounts/signup/"][0] == "Sign up"
    current = [href for href, (_, marked) in links.items() if marked]
    assert current == [path]


def test_a_staff_member_also_finds_the_status_page_and_tokens(arena_models: list[Any]) -> None:
    staff = get_user_model().objects.create_user("root", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    for path in ["/status/", "/accounts/tokens/", "/leaderboard/"]:
        links = nav(client, path)
        assert set(SECTIONS) <= set(links)
        assert links["/status/"][0] == "Status" and links["/accounts/tokens/"][0] == "API tokens"
        assert "/accounts/signup/" not in links and "/accounts/login/" not in links
        assert [href for href, (_, marked) in links.items() if marked] == [path]
