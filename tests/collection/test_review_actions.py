"""The review queue's redact, edit and bulk actions with their history, and curators' saved
filters; what a redaction or an edit changes reaches later dataset versions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from arena.models import Battle
from collection import datasets, tasks
from collection.models import Dataset, ReviewAction, ReviewItem, ReviewStatus, SavedReviewFilter
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory, UserFactory

pytestmark = pytest.mark.django_db


def _curator(name: str) -> tuple[User, Client]:
    user = UserFactory.create(username=name, is_staff=True)
    user.groups.add(Group.objects.get(name="curator"))
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def queue() -> dict[str, ReviewItem]:
    a, b = ModelFactory.create(), ModelFactory.create()
    marked = {}
    for name, prompt, text_a in (
        ("leaky", "my card is 4111 1111 1111 1111", "I am model-one, call 0612345678"),
        ("rude", "something rude", "no"),
        ("spam", "buy pills", "ok"),
    ):
        vote = battle_vote(a, b, "a", prompt=prompt, text_a=text_a, text_b="fine")
        Battle.objects.filter(id=vote.battle_id).update(flagged=True, flag_reason=name)
        marked[name] = f"battle:{vote.battle_id}"
    _, client = _curator("first")
    assert client.get("/datasets/review/").status_code == 200
    return {name: ReviewItem.objects.get(source_key=key) for name, key in marked.items()}


def _freeze(capture: Any) -> list[dict[str, Any]]:
    dataset, _ = Dataset.objects.get_or_create(name="reviewed", sources=["battles"], steps=[])
    with capture(execute=False):
        version = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(version.id)
    return list(datasets.version_rows(version=version))


def test_it_redacts_and_edits_a_battle_for_later_versions_keeping_a_history_without_the_secret(
    queue: dict[str, ReviewItem], django_capture_on_commit_callbacks: Any
) -> None:
    curator, client = _curator("carol")
    item = queue["leaky"]
    url = f"/datasets/review/{item.id}/change/"
    page = client.get("/datasets/review/").content.decode()
    assert "4111 1111 1111 1111" in page  # the curator reads the battle to decide

    card = "4111 1111 1111 1111"
    assert client.post(url, {"action": "redact", "passage": card}).status_code == 302
    edit = {"action": "edit", "passage": "I am model-one, ", "replacement": "", "note": "leak"}
    assert client.post(url, edit).status_code == 302
    # A passage that is not (or no longer) there is refused; nothing is stored.
    for refused in (
        {"action": "redact", "passage": card},
        {"action": "redact", "passage": "   "},
        {"action": "delete", "passage": "call"},
    ):
        assert client.post(url, refused).status_code == 400
    item.refresh_from_db()
    assert item.edits == [
        {"find": card, "replace": "[REDACTED]"},
        {"find": "I am model-one, ", "replace": ""},
    ]
    actions = list(item.actions.values_list("action", "status", "user_id", "note", "change"))
    assert [a[:4] for a in actions] == [
        ("redact", "pending", curator.id, ""),
        ("edit", "pending", curator.id, "leak"),
    ]
    assert actions[0][4]["length"] == len(card) and card not in str(actions[0][4])
    assert actions[1][4] == {"before": "I am model-one, ", "after": ""}

    page = client.get("/datasets/review/").content.decode()
    assert card not in page and "Redacted 19 characters by carol" in page

    rows = {datasets.source_key(r): r for r in _freeze(django_capture_on_commit_callbacks)}
    texts = [m["content"] for m in rows[item.source_key]["messages"]]
    assert texts == ["my card is [REDACTED]", "call 0612345678", "fine"]
    assert rows[queue["rude"].source_key]["messages"][0]["content"] == "something rude"


def test_it_approves_or_rejects_a_selection_at_once_or_nothing(
    queue: dict[str, ReviewItem], django_capture_on_commit_callbacks: Any
) -> None:
    curator, client = _curator("dave")
    rude, spam, leaky = queue["rude"], queue["spam"], queue["leaky"]
    # One unknown item refuses the whole selection.
    response = client.post(
        "/datasets/review/bulk/", {"item": [rude.id, 987654], "status": "rejected"}
    )
    assert response.status_code == 400
    assert (
        client.post("/datasets/review/bulk/", {"item": ["x"], "status": "rejected"}).status_code
        == 400
    )
    assert client.post("/datasets/review/bulk/", {"status": "rejected"}).status_code == 400
    assert not ReviewAction.objects.exists()

    response = client.post(
        "/datasets/review/bulk/",
        {"item": [rude.id, spam.id], "status": "rejected", "note": "junk", "filter_kind": "report"},
    )
    assert response.status_code == 302 and response["Location"] == "/datasets/review/?kind=report"
    statuses = dict(ReviewItem.objects.values_list("id", "status"))
    assert statuses == {
        rude.id: ReviewStatus.REJECTED,
        spam.id: ReviewStatus.REJECTED,
        leaky.id: ReviewStatus.PENDING,
    }
    assert sorted(ReviewAction.objects.values_list("item_id", "user_id", "note")) == sorted(
        [(rude.id, curator.id, "junk"), (spam.id, curator.id, "junk")]
    )
    keys = {datasets.source_key(r) for r in _freeze(django_capture_on_commit_callbacks)}
    assert keys == {leaky.source_key}


def test_it_keeps_saved_filters_per_curator(queue: dict[str, ReviewItem]) -> None:
    erin, client = _curator("erin")
    _, other = _curator("frank")
    response = client.post(
        "/datasets/review/filters/",
        {"name": "spam only", "filter_q": "spam", "filter_status": "all"},
    )
    assert response.status_code == 302
    assert client.post("/datasets/review/filters/", {"name": "empty"}).status_code == 400
    assert (
        client.post("/datasets/review/filters/", {"name": "", "filter_q": "x"}).status_code == 400
    )
    saved = SavedReviewFilter.objects.get(user=erin)
    assert saved.params == {"status": "all", "kind": "", "q": "spam"}

    page = client.get("/datasets/review/").content.decode()
    assert "spam only" in page
    assert "spam only" not in other.get("/datasets/review/").content.decode()
    filtered = client.get("/datasets/review/?status=all&q=spam").content.decode()
    assert queue["spam"].source_key in filtered and queue["rude"].source_key not in filtered

    delete = f"/datasets/review/filters/{saved.id}/delete/"
    assert other.post(delete).status_code == 404  # not frank's
    assert client.post(delete).status_code == 302
    assert not SavedReviewFilter.objects.exists()
