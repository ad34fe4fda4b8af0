"""A reader opens the board of a fresh arena after 0, 2 and 400 votes: an empty board, then
provisional rows (vote counts, no rank, no unbounded rating), then ranked rows beside the model
still short of the threshold."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from arena.leaderboard import services
from modelhub.models import Model
from tests.factories import EndpointFactory, ModelFactory
from tests.leaderboard.votes import make_vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Few bootstrap rounds: the test reads what the page shows, not the width of the intervals.
ROUNDS = {"rounds": 30, "style_rounds": 5, "elo_rounds": 5}


@pytest.fixture
def arena_models(db: None) -> list[Model]:
    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    models: list[Model] = [
        ModelFactory.create(
            name=f"zoo-{size}", display_name=f"Zoo Llama {size.upper()}", organization="Zoo"
        )
        for size in ("s", "m", "l")
    ]
    for model in models:
        EndpointFactory(model=model)
    return models


def _open_board(page: Page, asgi_server: Any) -> None:
    services.leaderboard_refresh(**ROUNDS)
    page.goto(asgi_server.url + "/leaderboard/")


def test_it_reads_right_from_the_first_votes(
    page: Page, asgi_server: Any, arena_models: list[Model]
) -> None:
    small, medium, large = arena_models
    threshold = settings.LEADERBOARD_MIN_VOTES
    assert threshold == 300

    _open_board(page, asgi_server)
    expect(page.locator("#board-empty")).to_have_text("No counted votes yet.")
    expect(page.locator("#leaderboard-table")).to_have_count(0)
    expect(page.locator("#provisional-table")).to_have_count(0)

    make_vote(small, medium, "a")
    make_vote(small, medium, "a")
    _open_board(page, asgi_server)
    expect(page.locator("#leaderboard-table")).to_have_count(0)
    expect(page.locator("#provisional-heading")).to_contain_text("fewer than 300 counted votes")
    rows = page.locator("#provisional-table tbody tr")
    expect(rows).to_have_count(2)
    for name in ("Zoo Llama S", "Zoo Llama M"):
        row = rows.filter(has_text=name)
        expect(row).to_contain_text("provisional")
        expect(row.locator("td").nth(1)).to_have_text("2")
        # Two wins and nothing else: the data bound no rating, and the page says so.
        expect(row).to_contain_text("not estimable yet")
    board_text = page.locator("#board").inner_text()
    assert "Rank" not in board_text
    # No four-digit rating and no three-digit margin (the page writes margins as +N/\u2212N).
    assert not re.search(r"\b[2-9]\d{3}\b|\u2212\d{3,}", board_text), board_text

    # 400 votes: S and M meet 200 times, each meets L 100 times. S and M pass 300; L does not.
    for k in range(198):
        make_vote(small, medium, "a" if k % 3 else "b")
    for k in range(100):
        make_vote(small, large, "a" if k % 4 else "b")
        make_vote(medium, large, "a" if k % 2 else "tie")
    _open_board(page, asgi_server)
    ranked = page.locator("#leaderboard-table tbody tr")
    expect(ranked).to_have_count(2)
    expect(ranked.nth(0)).to_contain_text("Zoo Llama S")
    expect(ranked.nth(0).locator("td").first).to_have_text("1")
    expect(ranked.nth(1)).to_contain_text("Zoo Llama M")
    expect(ranked.nth(0).locator("td").nth(4)).to_have_text("300")
    provisional = page.locator("#provisional-table tbody tr")
    expect(provisional).to_have_count(1)
    expect(provisional.first).to_contain_text("Zoo Llama L")
    expect(provisional.first.locator("td").nth(1)).to_have_text("200")
    expect(page.locator("#board")).not_to_contain_text("not estimable yet")
    expect(page.locator("#bothbad-rule")).to_contain_text("counted as a tie")

    page.select_option("select[name=rating]", "elo")
    expect(page.locator("#board h2")).to_contain_text("Online Elo ratings")
    expect(page.locator("#leaderboard-table tbody tr")).to_have_count(2)
