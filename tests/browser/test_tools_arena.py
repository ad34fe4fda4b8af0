"""A tools battle in the browser: both sides' calculator calls stream in collapsed, the page shows
nothing of the models before the vote, and the vote reveals them."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from arena.models import Battle, Vote
from tests.factories import EndpointFactory, ModelFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def tool_models(upstream: Any, celery_worker: str) -> list[Any]:
    from modelhub.models import Model

    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    return [
        EndpointFactory(
            model=ModelFactory(
                name=name,
                display_name=display,
                organization=org,
                served_name="fake-tools",
                tools=["calculator", "convert"],
            ),
            base_url=upstream.base_url,
        ).model
        for name, display, org in (
            ("abacus-7b", "Abacus Seven", "Countcorp"),
            ("slide-rule", "Slide Rule", "Logworks"),
        )
    ]


def test_it_runs_a_tools_battle_shows_the_calls_and_reveals_the_names_on_vote(
    page: Page, asgi_server: Any, tool_models: list[Any]
) -> None:
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames.append(str(p))))
    page.goto(asgi_server.url + "/tools/")
    expect(page.locator("h1")).to_have_text("Which model uses its tools better?")
    page.get_by_test_id("prompt-input").fill("What is 12 * (3 + 4)?")
    page.get_by_test_id("send").click()
    for side in ("a", "b"):
        expect(page.get_by_test_id(f"answer-{side}")).to_contain_text("The tool said: 84")
        call = page.get_by_test_id(f"tool-calls-{side}").get_by_test_id("tool-call")
        expect(call).to_have_count(1)
        expect(call).to_have_attribute("data-tool-name", "calculator")
        expect(call).not_to_have_attribute("open", "")  # collapsed until clicked
        expect(call.locator(".tool-result")).not_to_be_visible()
        call.locator("summary").click()
        expect(call.locator(".tool-arguments")).to_have_text('{"expression": "12 * (3 + 4)"}')
        expect(call.locator(".tool-result")).to_have_text("84")
    assert any('"tool_call"' in f for f in frames)
    everything = (page.content() + "\n".join(frames)).lower()
    for model in tool_models:
        for term in (model.name, model.display_name, model.organization):
            assert term.lower() not in everything, f"{term!r} reached the browser before the vote"
    expect(page.get_by_test_id("model-name-a")).to_have_text("Model A")

    page.get_by_test_id("vote-a").click()
    expect(page.get_by_test_id("verdict")).to_be_visible()
    expect(page.get_by_test_id("new-round")).to_have_attribute("href", "/tools/")
    battle = Battle.objects.get()
    expect(page.get_by_test_id("model-name-a")).to_have_text(battle.model_a.display_name)
    expect(page.get_by_test_id("model-name-b")).to_have_text(battle.model_b.display_name)  # type: ignore[union-attr]
    vote = Vote.objects.get()
    assert vote.choice == "a" and vote.anony and "tools" in battle.categories
    # The stored calls come back with the page after the vote.
    page.reload()
    expect(page.get_by_test_id("tool-call")).to_have_count(2)
    # "New round" goes back to the tools arena and starts another tools battle there.
    page.get_by_test_id("new-round").click()
    expect(page.locator("h1")).to_have_text("Which model uses its tools better?")
    page.get_by_test_id("prompt-input").fill("What is 2 + 3?")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer-a")).to_contain_text("The tool said:")
    second = Battle.objects.exclude(id=battle.id).get()
    assert second.tools == battle.tools and "tools" in second.categories
