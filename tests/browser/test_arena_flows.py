"""A new user clicks through the arena: anonymous battle, vote and reveal, multi-turn, regenerate,
image battle, side-by-side vote and direct chat; plus what the browser receives before a vote."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from arena.models import Battle, Turn, Vote
from tests.factories import EndpointFactory, ModelFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Screenshots of each run go to a scratch folder (the README's come from `ludus_dev.screenshots`
# against real zoo models), so running the suite never dirties the checkout.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "data" / "test-screenshots"


@pytest.fixture
def models(upstream: Any, celery_worker: str) -> list[Any]:
    specs = [
        ("alpha-7b", "Alpha Seven", "Alphacorp", ["text"]),
        ("beta-chat", "Beta Chat", "Betalabs", ["text"]),
        ("gamma-vl", "Gamma Vision", "Gammaworks", ["text", "image"]),
        ("delta-vl", "Delta Vision", "Deltaview", ["text", "image"]),
    ]
    from modelhub.models import Model

    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    created = []
    for name, display, org, modalities in specs:
        model = ModelFactory(
            name=name,
            display_name=display,
            organization=org,
            modalities=modalities,
            served_name="fake-r400",
            max_tokens=12,
            identity_patterns=[f"i am {display.lower()}"],
        )
        EndpointFactory(model=model, base_url=upstream.base_url)
        created.append(model)
    return created


def _identity_terms(models: list[Any]) -> list[str]:
    return [t.lower() for m in models for t in (m.name, m.display_name, m.organization)]


def _start_battle(page: Page, prompt: str) -> None:
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer-a")).to_contain_text("t11", timeout=20_000)
    expect(page.get_by_test_id("answer-b")).to_contain_text("t11", timeout=20_000)
    expect(page.get_by_test_id("vote-a")).to_be_enabled()


def test_it_runs_an_anonymous_battle_without_leaking_names_then_reveals_them(
    page: Page, asgi_server: Any, models: list[Any]
) -> None:
    received: list[str] = []

    def on_response(response: Any) -> None:
        try:
            received.append(response.text())
        except Exception:  # redirects and aborted requests have no body
            received.append(response.url)

    def on_websocket(ws: Any) -> None:
        ws.on("framereceived", lambda payload: received.append(str(payload)))
        ws.on("framesent", lambda payload: received.append(str(payload)))

    page.on("response", on_response)
    page.on("websocket", on_websocket)
    page.goto(asgi_server.url + "/")
    _start_battle(page, "Tell me a joke about arenas")
    expect(page.get_by_test_id("model-name-a")).to_have_text("Model A")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "battle-before-vote.png"), full_page=True)

    # Everything the browser has received so far, and the URL it shows.
    received.append(page.url)
    received.append(page.content())
    everything = "\n".join(received).lower()
    assert len(received) > 5
    assert any('"type": "delta"' in r or '"type":"delta"' in r for r in received)
    for term in _identity_terms(models):
        assert term not in everything, f"{term!r} reached the browser before the vote"

    page.get_by_test_id("vote-a").click()
    battle = Battle.objects.select_related("model_a", "model_b").get()
    assert battle.model_b is not None
    expect(page.get_by_test_id("model-name-a")).to_have_text(battle.model_a.label)
    expect(page.get_by_test_id("model-name-b")).to_have_text(battle.model_b.label)
    expect(page.get_by_test_id("verdict")).to_contain_text("A is better")
    page.screenshot(path=str(SCREENSHOTS / "battle-after-vote.png"), full_page=True)
    vote = Vote.objects.get()
    assert (vote.choice, vote.anony, vote.leaked) == ("a", True, False)
    share = page.get_by_test_id("share-link").get_attribute("href")

    # Multi-turn: both sides get the follow-up.
    page.get_by_test_id("prompt-input").fill("And another one")
    page.get_by_test_id("send").click()
    expect(page.locator(".turn")).to_have_count(2)
    expect(page.get_by_test_id("answer-a")).to_contain_text("t11", timeout=20_000)
    expect(page.get_by_test_id("answer-b")).to_contain_text("t11", timeout=20_000)
    page.get_by_test_id("vote-tie").click()
    expect(page.get_by_test_id("verdict")).to_contain_text("Tie")
    turns = list(Turn.objects.order_by("index"))
    assert [t.index for t in turns] == [1, 2]
    second = turns[1].generation_b
    assert second is not None
    assert second.messages[-1] == {"role": "user", "content": "And another one"}
    assert [m["role"] for m in second.messages] == ["user", "assistant", "user"]
    assert Vote.objects.get(turn=turns[1]).anony is False  # names were known by then

    # The share link shows names and answers to anyone.
    assert share
    other = page.context.browser.new_page()  # type: ignore[union-attr]
    other.goto(share)
    expect(other.get_by_test_id("model-name-a")).to_have_text(battle.model_a.label)
    other.close()

    page.get_by_test_id("new-round").click()
    expect(page.get_by_test_id("prompt-input")).to_be_visible()
    expect(page.get_by_test_id("answer-a")).to_have_count(0)


def test_a_returning_visitor_s_page_opens_its_socket_as_it_loads_and_stops_an_answer_on_it(
    page: Page, asgi_server: Any, models: list[Any]
) -> None:
    """A visitor who has battled before gets a page whose socket opens as it loads, so the first
    answer's tokens wait for no handshake, and a stop sent on that socket is theirs. A first-time
    visitor has no session for the socket to act for yet: theirs opens with the first answers."""
    from modelhub.models import Model

    sockets: list[Any] = []
    frames: list[str] = []

    def on_websocket(ws: Any) -> None:
        sockets.append(ws)
        ws.on("framereceived", lambda payload: frames.append(str(payload)))

    page.on("websocket", on_websocket)
    page.goto(asgi_server.url + "/")
    page.wait_for_load_state("networkidle")
    assert sockets == []  # a first visit: no session yet
    _start_battle(page, "Tell me a joke about sockets")
    page.get_by_test_id("vote-b").click()
    expect(page.get_by_test_id("verdict")).to_be_visible()

    Model.objects.update(served_name="fake-r10", max_tokens=200)
    sockets.clear()
    with page.expect_websocket(timeout=10_000) as opened:
        page.goto(asgi_server.url + "/")
    assert opened.value.url.endswith("/ws/generations/")
    frames.clear()
    page.get_by_test_id("prompt-input").fill("Write a long story")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer-a")).to_contain_text("t1 ", timeout=20_000)
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("vote-a")).to_be_enabled(timeout=20_000)

    assert len(sockets) == 1 and not sockets[0].is_closed()  # the answers came on it
    turn = Turn.objects.select_related("generation_a", "generation_b").get(
        battle=Battle.objects.latest("created_at")
    )
    for generation in (turn.generation_a, turn.generation_b):
        assert generation is not None and generation.status == "cancelled"
        assert any(str(generation.id) in frame and '"delta"' in frame for frame in frames)


def test_it_regenerates_and_keeps_the_earlier_answers(
    page: Page, asgi_server: Any, models: list[Any]
) -> None:
    page.goto(asgi_server.url + "/")
    _start_battle(page, "Write a haiku")
    first = Turn.objects.get()
    page.get_by_test_id("regenerate").click()
    expect(page.get_by_test_id("answer-a")).not_to_have_attribute(
        "id", f"ans-{first.generation_a_id}"
    )
    expect(page.get_by_test_id("vote-b")).to_be_enabled(timeout=20_000)
    page.get_by_test_id("vote-b").click()
    expect(page.get_by_test_id("verdict")).to_contain_text("B is better")
    attempts = list(Turn.objects.order_by("attempt"))
    assert [(t.index, t.attempt, t.superseded) for t in attempts] == [(1, 1, True), (1, 2, False)]
    assert Vote.objects.get().turn_id == attempts[1].id


def _png_bytes() -> bytes:
    image = Image.new("RGB", (2048, 1024), (200, 30, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_it_battles_vision_models_with_an_image(
    page: Page, asgi_server: Any, models: list[Any], tmp_path: Path
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(_png_bytes())
    page.goto(asgi_server.url + "/")
    page.get_by_test_id("image-input").set_input_files(str(path))
    _start_battle(page, "What colour is this?")
    battle = Battle.objects.get()
    assert {battle.model_a.name, battle.model_b.name} == {"gamma-vl", "delta-vl"}  # type: ignore[union-attr]
    assert battle.image_mime == "image/jpeg"
    with Image.open(io.BytesIO(bytes(battle.image))) as stored:  # type: ignore[arg-type]
        assert max(stored.size) == 1024
    content = Turn.objects.get().generation_a.messages[-1]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    expect(page.locator("img.thumb")).to_be_visible()
    page.get_by_test_id("vote-bothbad").click()
    expect(page.get_by_test_id("verdict")).to_contain_text("Both are bad")


def _side_by_side(page: Page, url: str, model_a: str, model_b: str) -> None:
    page.goto(url + "/side-by-side/")
    page.get_by_test_id("model-select-a").select_option(model_a)
    page.get_by_test_id("model-select-b").select_option(model_b)


def test_it_records_a_side_by_side_vote_as_not_anonymous(
    page: Page, asgi_server: Any, models: list[Any]
) -> None:
    _side_by_side(page, asgi_server.url, "alpha-7b", "beta-chat")
    expect(page.get_by_test_id("model-name-a")).to_have_count(0)
    _start_battle(page, "Compare yourselves")
    expect(page.get_by_test_id("model-name-a")).to_have_text("Alpha Seven")
    expect(page.get_by_test_id("model-name-b")).to_have_text("Beta Chat")
    page.get_by_test_id("vote-b").click()
    expect(page.get_by_test_id("verdict")).to_contain_text("B is better")
    vote = Vote.objects.select_related("battle").get()
    assert (vote.battle.mode, vote.anony, vote.choice) == ("named", False, "b")


def test_a_refused_prompt_stays_in_the_form_with_the_models_picked(
    page: Page, asgi_server: Any, models: list[Any]
) -> None:
    _side_by_side(page, asgi_server.url, "beta-chat", "gamma-vl")
    prompt = "how do I build a bomb, <b>quickly</b>?"
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("error")).to_contain_text("moderation")
    expect(page.get_by_test_id("prompt-input")).to_have_value(prompt)
    expect(page.get_by_test_id("model-select-a")).to_have_value("beta-chat")
    expect(page.get_by_test_id("model-select-b")).to_have_value("gamma-vl")
    assert not Battle.objects.exists()


def test_it_chats_directly_with_one_model(page: Page, asgi_server: Any, models: list[Any]) -> None:
    page.goto(asgi_server.url + "/chat/")
    page.get_by_test_id("model-select-a").select_option("beta-chat")
    page.get_by_test_id("prompt-input").fill("Hello")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer-a")).to_contain_text("t11", timeout=20_000)
    expect(page.get_by_test_id("answer-b")).to_have_count(0)
    expect(page.get_by_test_id("model-name-a")).to_have_text("Beta Chat")
    # Words beside the emoji: a browser without an emoji font still shows what each button does.
    expect(page.get_by_test_id("vote-up")).to_contain_text("Good answer")
    expect(page.get_by_test_id("vote-down")).to_contain_text("Bad answer")
    page.get_by_test_id("vote-up").click()
    expect(page.get_by_test_id("verdict")).to_contain_text("Thanks")
    page.get_by_test_id("prompt-input").fill("Tell me more")
    page.get_by_test_id("send").click()
    expect(page.locator(".turn")).to_have_count(2)
    expect(page.get_by_test_id("answer-a")).to_contain_text("t11", timeout=20_000)
    page.get_by_test_id("flag").click()
    expect(page.locator("#vote-msg")).to_contain_text("flagged")
    battle = Battle.objects.get()
    assert (battle.mode, battle.flagged, battle.model_b) == ("direct", True, None)
    assert Vote.objects.get().choice == "up"


def test_it_stops_a_streaming_answer(page: Page, asgi_server: Any, models: list[Any]) -> None:
    from modelhub.models import Model

    Model.objects.update(served_name="fake-r10", max_tokens=200)
    page.goto(asgi_server.url + "/")
    page.get_by_test_id("prompt-input").fill("Write a long story")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer-a")).to_contain_text("t1 ", timeout=20_000)
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("vote-a")).to_be_enabled(timeout=20_000)
    turn = Turn.objects.select_related("generation_a").get()
    assert turn.generation_a.status == "cancelled"


def test_a_visitor_s_browser_logs_no_errors(
    page: Page, asgi_server: Any, models: list[Any]
) -> None:
    """No page a visitor opens first makes the browser log an error (a missing icon did, on every
    page: the browser asks for /favicon.ico when the page names none)."""
    errors: list[str] = []
    page.on(
        "console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    for path in ["/", "/side-by-side/", "/chat/", "/leaderboard/", "/accounts/login/"]:
        page.goto(asgi_server.url + path)
        page.wait_for_load_state("networkidle")
    assert errors == []
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon and page.request.get(asgi_server.url + icon).ok


def test_the_battle_page_fits_its_budget(page: Page, asgi_server: Any, models: list[Any]) -> None:
    """Requests and bytes of a cold load of the battle page (timings belong in bench/)."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(asgi_server.url + "/")
    page.wait_for_load_state("networkidle")
    metrics = page.evaluate(
        """() => {
          const entries = performance.getEntriesByType('resource');
          const nav = performance.getEntriesByType('navigation')[0];
          const fcp = performance.getEntriesByName('first-contentful-paint')[0];
          return {
            bytes: entries.reduce((s, e) => s + e.transferSize, 0) + nav.transferSize,
            decoded: entries.reduce((s, e) => s + e.decodedBodySize, 0) + nav.decodedBodySize,
            fcp_ms: fcp ? fcp.startTime : null,
          };
        }"""
    )
    print("page budget:", json.dumps({"requests": len(requests), **metrics}))
    assert len(requests) <= 15
    assert metrics["bytes"] <= 100 * 1024
