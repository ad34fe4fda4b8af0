"""A new contributor clicks through every quest type and watches the game answer: pending XP that
settles after review, a level-up, a streak, the "near me" window and the profile's outcomes; and a
"both bad" arena vote becomes a reference-answer quest that someone else answers."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from collection import services, tasks
from collection.models import GoldCopy, GoldItem, QuestItem, XpEntry, XpState
from tests.collection.helpers import claim, make_item
from tests.factories import PASSWORD, EndpointFactory, ModelFactory, UserFactory
from tests.leaderboard.votes import make_vote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def _log_in(page: Page, url: str, username: str) -> None:
    page.goto(url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("quests-link")).to_be_visible()


def _sign_up(page: Page, url: str, username: str) -> None:
    page.goto(url + "/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("quests-link")).to_be_visible()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _open_card(page: Page, quest_type: str) -> None:
    page.get_by_test_id("quests-link").click()
    page.locator(f'[data-testid="quest-card"][data-quest-type="{quest_type}"]').click()
    expect(page.get_by_test_id("quest-item")).to_have_attribute("data-quest-type", quest_type)


def _submit(page: Page) -> str:
    """Submit the quest and return the XP state the result shows."""
    page.get_by_test_id("quest-submit").click()
    expect(page.get_by_test_id("quest-result")).to_be_visible()
    return page.get_by_test_id("result-xp-state").inner_text()


def test_it_walks_a_new_contributor_through_every_quest_type(
    browser: Browser, page: Page, asgi_server: Any
) -> None:
    url = asgi_server.url
    # Work waiting: one item of each type (a review of charlie's reference answer among them).
    charlie = UserFactory.create(username="charlie")
    UserFactory.create(username="bob")
    make_item("rank", overlap=1, prompt="Rank these")
    make_item("label", overlap=1, prompt="Label this")
    battle = make_vote(ModelFactory.create(), ModelFactory.create(), "tie").battle
    battle.image, battle.image_mime = _png(), "image/png"
    battle.save(update_fields=["image", "image_mime"])
    make_item("image", overlap=1, prompt="What is in the picture?", battle_id=battle.id)
    make_item("reference", prompt="Write the capital of France")
    make_item("reference", prompt="Name a prime")
    services.assignment_submit(
        user_id=charlie.pk, assignment_id=claim(charlie, "reference").id, data={"text": "Paris"}
    )
    # Others on the board, so that "near me" has neighbours.
    for k in range(12):
        peer = UserFactory.create(username=f"peer{k:02d}")
        services.xp_post(
            user_id=peer.pk, amount=60 - 4 * k, reason="seed", state=XpState.SETTLED, key=f"s{k}"
        )

    _sign_up(page, url, "dana")
    page.get_by_test_id("quests-link").click()
    expect(page.get_by_test_id("quest-card")).to_have_count(5)
    for kind in ("rank", "label", "image", "review", "reference"):
        card = page.locator(f'[data-testid="quest-card"][data-quest-type="{kind}"]')
        expect(card).to_have_count(1)

    level_ups = 0
    _open_card(page, "rank")
    page.get_by_test_id("rank-a").select_option("2")
    page.get_by_test_id("rank-b").select_option("1")
    assert _submit(page) == "settled"  # the only answer: it is the consensus
    level_ups += page.get_by_test_id("level-up").count()

    _open_card(page, "label")
    page.get_by_test_id("label-helpful").check()
    page.get_by_test_id("rating-4").check()
    assert _submit(page) == "settled"
    level_ups += page.get_by_test_id("level-up").count()

    _open_card(page, "image")
    expect(page.locator('[data-testid="quest-item"] img')).to_be_visible()
    assert _submit(page) == "settled"
    level_ups += page.get_by_test_id("level-up").count()

    _open_card(page, "review")
    expect(page.get_by_test_id("quest-item")).to_contain_text("Paris")
    page.get_by_test_id("verdict-accept").check()
    assert _submit(page) == "settled"
    level_ups += page.get_by_test_id("level-up").count()

    # A written answer survives a reload as a draft, then waits on review.
    _open_card(page, "reference")
    answer = page.get_by_test_id("quest-answer")
    answer.press_sequentially("The capital of France is Paris.", delay=5)
    expect(page.get_by_test_id("draft-status")).to_have_text("Draft saved.")
    page.reload()
    expect(page.get_by_test_id("quest-answer")).to_have_value("The capital of France is Paris.")
    assert _submit(page) == "pending"
    level_ups += page.get_by_test_id("level-up").count()
    assert level_ups == 1

    page.goto(url + "/me/")
    pending = int(page.get_by_test_id("xp-pending").inner_text())
    settled_before = int(page.get_by_test_id("xp-settled").inner_text())
    assert pending > 0
    assert int(page.get_by_test_id("level").inner_text()) == 2
    expect(page.get_by_test_id("contribution")).to_have_count(5)

    # Someone else reviews dana's answer in their own browser: her pending XP settles.
    second = browser.new_context()
    reviewer = second.new_page()
    _log_in(reviewer, url, "bob")
    _open_card(reviewer, "review")
    expect(reviewer.get_by_test_id("quest-item")).to_contain_text("The capital of France is Paris.")
    reviewer.get_by_test_id("verdict-accept").check()
    assert _submit(reviewer) == "settled"
    second.close()

    # Yesterday dana voted too (a ledger entry from then): her streak is two days.
    earlier = services.xp_post(
        user_id=User.objects.get(username="dana").pk,
        amount=1,
        reason="yesterday",
        state=XpState.SETTLED,
        key="yesterday",
    )
    assert earlier is not None
    XpEntry.objects.filter(id=earlier.id).update(created_at=timezone.now() - timedelta(days=1))

    page.reload()
    expect(page.get_by_test_id("xp-pending")).to_have_text("0")
    assert int(page.get_by_test_id("xp-settled").inner_text()) == settled_before + pending + 1
    expect(page.get_by_test_id("streak")).to_have_text("2")
    outcomes = page.get_by_test_id("outcome").all_inner_texts()
    assert "accepted by review" in outcomes
    assert "reply B ranked first by 1 of 1" in outcomes

    page.goto(url + "/quests/leaderboard/?period=all")
    near = page.get_by_test_id("near-row")
    expect(near).to_have_count(5)
    expect(near.nth(2)).to_contain_text("dana")
    expect(page.locator('[data-testid="near-row"][data-me="1"]')).to_contain_text("dana")


def test_it_starts_a_new_contributor_on_gold_items_and_settles_them_on_the_refresh(
    page: Page, asgi_server: Any
) -> None:
    url = asgi_server.url
    call_command("seed_gold_items")
    # Three ranking gold items for the three onboarding items (the server's default), and one
    # ordinary ranking: the fourth item.
    golds = GoldItem.objects.filter(type="rank").order_by("id")
    GoldItem.objects.filter(id__in=[g.id for g in golds[3:]]).update(active=False)
    ordinary = make_item("rank", prompt="An ordinary ranking")
    _sign_up(page, url, "erin")
    _open_card(page, "rank")
    for _ in range(3):
        item_id = int(page.get_by_test_id("quest-item").get_attribute("data-item-id") or 0)
        copy = GoldCopy.objects.get(item_id=item_id)
        top = copy.answer["top"]
        keys = [r["key"] for r in copy.item.replies]
        page.get_by_test_id(f"rank-{top}").select_option("1")
        for place, key in enumerate([k for k in keys if k != top], start=2):
            page.get_by_test_id(f"rank-{key}").select_option(str(place))
        assert _submit(page) == "pending"  # as any ranking's, until others answer
        page.get_by_test_id("quest-next").click()
    expect(page.get_by_test_id("quest-item")).to_have_attribute("data-item-id", str(ordinary.id))

    tasks.refresh_reliabilities()
    page.goto(url + "/me/")
    outcomes = page.get_by_test_id("outcome").all_inner_texts()
    assert outcomes == ["checked against a known answer: right"] * 3
    expect(page.get_by_test_id("xp-pending")).to_have_text("0")
    assert int(page.get_by_test_id("xp-settled").inner_text()) > 0


@pytest.fixture
def arena_models(upstream: Any, celery_worker: str) -> list[Any]:
    from modelhub.models import Model

    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    created = []
    for name in ("alpha-7b", "beta-chat"):
        model = ModelFactory(name=name, served_name="fake-r400", max_tokens=12)
        EndpointFactory(model=model, base_url=upstream.base_url)
        created.append(model)
    return created


def test_it_turns_a_both_bad_vote_into_a_reference_quest_someone_else_answers(
    browser: Browser, page: Page, asgi_server: Any, arena_models: list[Any]
) -> None:
    url = asgi_server.url
    UserFactory.create(username="bob")
    UserFactory.create(username="charlie")
    _log_in(page, url, "bob")
    page.goto(url + "/")
    page.get_by_test_id("prompt-input").fill("Explain tides in one line")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer-a")).to_contain_text("t11", timeout=20_000)
    expect(page.get_by_test_id("answer-b")).to_contain_text("t11", timeout=20_000)
    page.get_by_test_id("vote-bothbad").click()
    expect(page.get_by_test_id("model-name-a")).to_be_visible()  # the vote is in: names revealed

    # The worker turns the vote into quests; bob never gets his own battle's prompt back.
    item = None
    for _ in range(100):
        item = QuestItem.objects.filter(type="reference").first()
        if item:
            break
        page.wait_for_timeout(100)
    assert item is not None and item.prompt == "Explain tides in one line"
    page.goto(url + "/quests/reference/")
    expect(page.get_by_test_id("quest-empty")).to_be_visible()

    other = browser.new_context()
    writer = other.new_page()
    _log_in(writer, url, "charlie")
    _open_card(writer, "reference")
    expect(writer.get_by_test_id("quest-item")).to_contain_text("Explain tides in one line")
    writer.get_by_test_id("quest-answer").fill("The Moon's pull raises the sea twice a day.")
    assert _submit(writer) == "pending"
    writer.goto(url + "/me/")
    expect(writer.get_by_test_id("contribution")).to_have_count(1)
    expect(writer.get_by_test_id("outcome")).to_have_text("waiting for review")
    other.close()
