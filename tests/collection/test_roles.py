"""Curation roles: what a curator, an admin, staff without a role and a contributor may do on each
curation action (the groups come from a data migration; views check permissions, not is_staff)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from arena.apitokens import token_create
from arena.models import ApiToken, Battle
from collection import tasks
from collection.models import (
    Dataset,
    DatasetVersion,
    ReviewItem,
    ReviewStatus,
    SavedReviewFilter,
    VersionStatus,
)
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory, UserFactory

pytestmark = pytest.mark.django_db

PEOPLE = ("contributor", "staff", "curator", "admin")


@pytest.fixture
def people() -> dict[str, Client]:
    """A logged-in client per person: a contributor, staff without a role, a curator, an admin."""
    clients = {}
    for name in PEOPLE:
        user = UserFactory.create(username=name, is_staff=name != "contributor")
        if name in ("curator", "admin"):
            user.groups.add(Group.objects.get(name=name))
        client = Client()
        client.force_login(user)
        clients[name] = client
    return clients


@pytest.fixture
def world(django_capture_on_commit_callbacks: Any) -> dict[str, Any]:
    a, b = ModelFactory.create(), ModelFactory.create()
    vote = battle_vote(a, b, "a", prompt="call me on 555", text_a="ok")
    Battle.objects.filter(id=vote.battle_id).update(flagged=True, flag_reason="spam")
    dataset = Dataset.objects.create(name="roles", sources=["battles"], steps=[])
    with django_capture_on_commit_callbacks(execute=False):
        from collection import datasets

        version = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(version.id)
    researcher = UserFactory.create(username="researcher")
    token, _ = token_create(user=researcher, name="script")
    return {"dataset": dataset, "version": version, "battle": str(vote.battle_id), "token": token}


def _outcome(response: Any) -> str:
    """What a person met: allowed (2xx, a redirect within the site, or 400 for input judged
    past the permission check), forbidden (403), or sent to the admin's login (not staff)."""
    if response.status_code == 403:
        return "forbidden"
    if response.status_code == 302 and response["Location"].startswith("/admin/login/"):
        return "login"
    assert response.status_code in (200, 302, 400), (response.status_code, response.content[:300])
    return "allowed"


def test_it_lets_each_role_do_what_it_holds_and_nothing_more(
    people: dict[str, Client], world: dict[str, Any]
) -> None:
    people["admin"].get("/datasets/review/")  # the queue takes the reported battle in
    item = ReviewItem.objects.get(source_key=f"battle:{world['battle']}")
    version, dataset = world["version"], world["dataset"]
    actions: dict[str, tuple[str, str, dict[str, Any]]] = {
        "review queue": ("get", "/datasets/review/", {}),
        "decide": ("post", f"/datasets/review/{item.id}/decide/", {"status": "approved"}),
        "bulk": ("post", "/datasets/review/bulk/", {"item": [item.id], "status": "approved"}),
        "redact": (
            "post",
            f"/datasets/review/{item.id}/change/",
            {"action": "redact", "passage": "555"},
        ),
        "save filter": (
            "post",
            "/datasets/review/filters/",
            {"name": "x", "filter_kind": "report"},
        ),
        "datasets page": ("get", "/datasets/", {}),
        "version page": ("get", f"/datasets/v/{version.id}/", {}),
        "datasheet": ("get", f"/datasets/v/{version.id}/datasheet.md", {}),
        "freeze": ("post", f"/datasets/{dataset.id}/freeze/", {}),
        "dataset in the admin": ("get", f"/admin/collection/dataset/{dataset.id}/change/", {}),
        "tokens in the admin": ("get", "/admin/arena/apitoken/", {}),
        "delete version": ("post", f"/datasets/v/{version.id}/delete/", {}),
    }
    expected = {
        # contributor, staff without a role, curator, admin
        "review queue": ("login", "forbidden", "allowed", "allowed"),
        "decide": ("login", "forbidden", "allowed", "allowed"),
        "bulk": ("login", "forbidden", "allowed", "allowed"),
        "redact": ("login", "forbidden", "allowed", "allowed"),
        "save filter": ("login", "forbidden", "allowed", "allowed"),
        "datasets page": ("login", "forbidden", "allowed", "allowed"),
        "version page": ("login", "forbidden", "allowed", "allowed"),
        "datasheet": ("login", "forbidden", "allowed", "allowed"),
        "freeze": ("login", "forbidden", "allowed", "allowed"),
        "dataset in the admin": ("login", "forbidden", "allowed", "allowed"),
        "tokens in the admin": ("login", "forbidden", "forbidden", "allowed"),
        "delete version": ("login", "forbidden", "forbidden", "allowed"),
    }
    met = {
        action: tuple(_outcome(getattr(people[person], method)(url, data)) for person in PEOPLE)
        for action, (method, url, data) in actions.items()
    }
    assert met == expected
    assert not DatasetVersion.objects.filter(id=version.id).exists()  # the admin deleted it
    # Only the curator's and the admin's actions left a trace: two decisions, two bulk entries,
    # the first redaction (the admin's found the passage gone), one filter each.
    item.refresh_from_db()
    assert item.status == ReviewStatus.APPROVED
    assert item.edits == [{"find": "555", "replace": "[REDACTED]"}]
    assert {f.user.username for f in SavedReviewFilter.objects.all()} == {"curator", "admin"}


def test_it_lets_only_an_admin_revoke_someone_elses_token(
    people: dict[str, Client], world: dict[str, Any]
) -> None:
    token: ApiToken = world["token"]
    url = f"/admin/arena/apitoken/{token.id}/delete/"
    for person in ("curator", "staff"):
        assert people[person].post(url, {"post": "yes"}).status_code == 403
    assert ApiToken.objects.filter(id=token.id).exists()
    assert people["admin"].post(url, {"post": "yes"}).status_code == 302
    assert not ApiToken.objects.filter(id=token.id).exists()


def test_it_keeps_a_version_that_is_being_frozen(
    people: dict[str, Client], world: dict[str, Any]
) -> None:
    pending = DatasetVersion.objects.create(
        dataset=world["dataset"], number=9, status=VersionStatus.RUNNING
    )
    response = people["admin"].post(f"/datasets/v/{pending.id}/delete/")
    assert response.status_code == 302 and response["Location"] == f"/datasets/v/{pending.id}/"
    assert DatasetVersion.objects.filter(id=pending.id).exists()


def test_it_creates_the_roles_with_their_permissions() -> None:
    def perms(name: str) -> set[str]:
        group = Group.objects.get(name=name)
        return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}

    from collection import roles

    assert perms("curator") == set(roles.CURATOR_PERMISSIONS)
    assert perms("admin") == set(roles.ADMIN_PERMISSIONS)
    user: User = UserFactory.create(is_staff=True)
    user.groups.add(Group.objects.get(name="curator"))
    user = User.objects.get(id=user.id)  # a fresh permission cache
    assert user.has_perm(roles.VERSION_FREEZE) and not user.has_perm(roles.VERSION_DELETE)
