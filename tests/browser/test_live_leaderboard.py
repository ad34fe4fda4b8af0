"""A reader keeps the leaderboard open while votes arrive: the board updates itself, without a
reload, keeping the reader's toggles."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from arena.leaderboard import services
from modelhub.models import Model
from tests.factories import EndpointFactory, ModelFactory
from tests.leaderboard.votes import make_vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ROUNDS = {"rounds": 20, "style_rounds": 5, "elo_rounds": 5}


@pytest.fixture
def live_models(db: None) -> list[Model]:
    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    models: list[Model] = [
        ModelFactory.create(name=f"live-{k}", display_name=f"Live Model {k}") for k in range(3)
    ]
    for model in models:
        EndpointFactory(model=model)
    return models


def test_it_shows_a_new_vote_on_the_open_board_without_a_reload(
    page: Page, asgi_server: Any, live_models: list[Model]
) -> None:
    first, second, third = live_models
    for k in range(6):
        make_vote(first, second, "a" if k % 3 else "b")
        make_vote(second, third, "a")
    services.leaderboard_refresh(**ROUNDS)
    page.goto(asgi_server.url + "/leaderboard/?deprecated=on")
    row = page.locator('#provisional-table tr[data-model="live-2"]')
    expect(row.locator("td").nth(1)).to_have_text("6")
    page.evaluate("window.stillTheSamePage = true")

    make_vote(first, third, "b")
    make_vote(first, third, "b")
    live = services.leaderboard_publish_live()
    assert live is not None and live.live

    expect(row.locator("td").nth(1)).to_have_text("8", timeout=15_000)
    expect(page.locator("#board-snapshot")).to_contain_text(f"Snapshot #{live.id}")
    expect(page.locator("#board-snapshot")).to_contain_text("live")
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.locator('input[name="deprecated"]')).to_be_checked()
