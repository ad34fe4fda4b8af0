"""Quest pages, the profile, the boards and the rules, with every refusal a precise status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from collection import services
from collection.models import Assignment, XpEntry, XpState
from tests.collection.helpers import claim, make_item
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/quests/", "/quests/rank/", "/me/"])
def test_it_sends_anonymous_visitors_to_log_in(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_shows_a_card_per_open_quest_type_and_the_top_bar_link(bob: Any) -> None:
    for kind in ("rank", "label", "reference", "image", "review"):
        make_item(kind)
    body = _client(bob).get("/quests/").content.decode()
    assert 'data-testid="quests-link"' in body
    for kind in ("rank", "label", "reference", "image", "review"):
        assert f'data-testid="quest-card" data-quest-type="{kind}"' in body


def test_it_shows_a_quest_item_with_its_controls(bob: Any) -> None:
    make_item("reference")
    body = _client(bob).get("/quests/reference/").content.decode()
    for hook in ("quest-item", "quest-submit", "quest-skip", "quest-answer"):
        assert f'data-testid="{hook}"' in body


def test_it_submits_with_htmx_and_shows_the_pending_xp(bob: Any) -> None:
    make_item("reference")
    assignment = claim(bob, "reference")
    response = _client(bob).post(
        f"/quests/a/{assignment.id}/submit/", {"text": "Paris."}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="result-xp-state">pending' in body
    assert "<html" not in body


def test_it_answers_409_to_a_submission_after_the_lease(bob: Any) -> None:
    make_item("rank")
    assignment = claim(bob, "rank")
    Assignment.objects.filter(id=assignment.id).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    response = _client(bob).post(
        f"/quests/a/{assignment.id}/submit/", {"rank_a": "1", "rank_b": "2"}
    )
    assert response.status_code == 409


def test_it_answers_404_to_someone_elses_assignment(bob: Any, charlie: Any) -> None:
    make_item("rank")
    assignment = claim(bob, "rank")
    client = _client(charlie)
    assert client.post(f"/quests/a/{assignment.id}/submit/", {"rank_a": "1"}).status_code == 404
    assert client.post(f"/quests/a/{assignment.id}/skip/").status_code == 404


def test_it_answers_400_to_an_answer_that_does_not_fit(bob: Any) -> None:
    make_item("label")
    assignment = claim(bob, "label")
    response = _client(bob).post(f"/quests/a/{assignment.id}/submit/", {"rating": "9"})
    assert response.status_code == 400


def test_it_answers_a_double_submission_the_same_way(bob: Any) -> None:
    make_item("rank", overlap=1)
    assignment = claim(bob, "rank")
    client = _client(bob)
    for _ in range(2):
        response = client.post(f"/quests/a/{assignment.id}/submit/", {"rank_a": "1", "rank_b": "2"})
        assert response.status_code == 200
    assert XpEntry.objects.filter(assignment=assignment).count() == 1


def test_it_saves_a_draft_as_one_types(bob: Any) -> None:
    item = make_item("reference")
    claim(bob, "reference")
    client = _client(bob)
    response = client.post(f"/quests/i/{item.id}/draft/", {"text": "Par"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Par</textarea>" in client.get("/quests/reference/").content.decode()


def test_it_lists_each_contribution_on_the_profile(bob: Any) -> None:
    make_item("rank", overlap=1)
    make_item("label", overlap=1)
    for kind in ("rank", "label"):
        data = {"rank_a": "1", "rank_b": "2"} if kind == "rank" else {"rating": "3"}
        services.assignment_submit(user_id=bob.pk, assignment_id=claim(bob, kind).id, data=data)
    body = _client(bob).get("/me/").content.decode()
    assert body.count('data-testid="contribution"') == 2
    assert "reply A ranked first by 1 of 1" in body
    for hook in ("xp-settled", "xp-pending", "level", "streak"):
        assert f'data-testid="{hook}"' in body


def test_it_shows_the_board_with_a_near_me_window_and_honours_the_opt_out(bob: Any) -> None:
    users = [UserFactory.create(username=f"c{k:02d}") for k in range(20)]
    for k, user in enumerate([*users, bob]):
        services.xp_post(
            user_id=user.pk, amount=100 - 3 * k, reason="t", state=XpState.SETTLED, key=f"t{k}"
        )
    client = _client(bob)
    body = client.get("/quests/leaderboard/?period=week").content.decode()
    near = body.split('data-testid="near-me"')[1]
    assert near.count('data-testid="near-row"') == 3  # bob is last: two above him
    assert "c19" in near and "bob" in near and "c05" not in near
    client.post("/me/leaderboard/", {"opt_out": "1"})
    body = client.get("/quests/leaderboard/?period=all").content.decode()
    assert "bob" not in body.split("</nav>")[1]
    assert 'data-testid="near-me"' not in body


def test_it_serves_the_rules_to_everyone() -> None:
    response = Client().get("/quests/rules/")
    assert response.status_code == 200
    assert "pending" in response.content.decode()


def test_it_lets_staff_add_an_item_that_opens_with_every_slot_free(alice: Any, bob: Any) -> None:
    alice.user_permissions.add(Permission.objects.get(codename="add_questitem"))
    client = _client(alice)
    response = client.post(
        "/admin/collection/questitem/add/",
        {"type": "reference", "priority": "0", "overlap": "2", "prompt": "Explain rainbows"},
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert claim(bob, "reference").item.open_slots == 1
