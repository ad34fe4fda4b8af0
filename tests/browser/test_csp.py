"""The Content-Security-Policy in a real browser: the arena streams, typesets math, highlights
code and takes a vote; staff and contributors open every page of theirs; and the browser reports
no violation of the policy (each would be a feature the policy broke), while a hostile answer's
script never runs."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from arena.models import Battle
from modelhub.models import Generation
from tests.factories import PASSWORD, EndpointFactory, ModelFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Init scripts run outside the page's policy: this one reports each violation as a console error.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture
def parrots(upstream: Any, celery_worker: str) -> None:
    """Two models that answer with the prompt's words (the fake upstream's fake-say)."""
    from modelhub.models import Model

    Model.objects.update(enabled=False)
    for name in ("parrot-a", "parrot-b"):
        model = ModelFactory(name=name, served_name="fake-say")
        EndpointFactory(model=model, base_url=upstream.base_url)


def _watch(page: Page) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    dialogs: list[str] = []
    page.add_init_script(REPORT_VIOLATIONS)
    page.on(
        "console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    return errors, dialogs


def test_the_arena_works_under_the_policy_and_hostile_answers_do_not_run(
    page: Page, asgi_server: Any, parrots: None
) -> None:
    errors, dialogs = _watch(page)
    page.goto(asgi_server.url + "/")
    prompt = "say: $x^2$ <img src=x onerror=alert(1)> [go](javascript:alert(2)) <script>alert(3)</script>"
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("vote-a")).to_be_enabled(timeout=20_000)
    expect(page.locator("[data-testid=answer-a] .katex").first).to_be_visible()

    # Code and display math in a stored answer: the page highlights and typesets them on load.
    battle = Battle.objects.get()
    turn = battle.turns.get()
    Generation.objects.filter(id=turn.generation_a_id).update(
        text="```python\nprint('hi')\n```\n\n$$\\int_0^1 x\\,dx$$\n\n" + prompt
    )
    page.reload()
    expect(page.locator("[data-testid=answer-a] code.hljs")).to_be_visible()
    expect(page.locator("[data-testid=answer-a] .katex-display")).to_be_visible()
    page.get_by_test_id("vote-a").click()
    expect(page.locator("#actions")).to_contain_text("You voted")
    assert page.locator("#arena a[href^='javascript'], #arena [onerror]").count() == 0
    assert dialogs == []
    assert errors == []


def test_every_page_a_contributor_or_staff_opens_works_under_the_policy(
    page: Page, asgi_server: Any, parrots: None
) -> None:
    UserFactory(username="alice", is_staff=True, is_superuser=True)
    errors, _ = _watch(page)
    page.goto(asgi_server.url + "/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(asgi_server.url + "/")
    for path in [
        "/", "/side-by-side/", "/chat/", "/leaderboard/", "/quests/", "/quests/rules/",
        "/quests/leaderboard/", "/me/", "/accounts/tokens/",
        "/status/", "/admin/", "/admin/arena/battle/", "/admin/modelhub/model/add/",
    ]:  # fmt: skip
        response = page.goto(asgi_server.url + path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
    # The admin's pages name no icon, so the browser's /favicon.ico 404s there: not this test's.
    policy = [e for e in errors if "Content Security Policy" in e or "CSP violation" in e]
    assert policy == []
    assert [e for e in errors if "Failed to load resource" not in e] == []
