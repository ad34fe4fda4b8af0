"""A dataset's preview: what freezing it now would do, counted per step, with nothing stored."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from collection.models import Dataset, DatasetVersion
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator(alice: User) -> Client:
    alice.groups.add(Group.objects.get(name="curator"))
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def planted(bob: User) -> None:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    battle_vote(a, b, "a", prompt="mail me at jane.doe@example.com", user=bob)
    battle_vote(a, b, "b", prompt="what is a prime number?", user=bob)
    battle_vote(a, b, "b", prompt="what is a prime number?", user=bob)  # an exact copy
    battle_vote(a, b, "tie", prompt="tell me a joke", user=bob)


def _steps(page: str) -> dict[str, str]:
    rows = page.split('data-testid="preview-step" data-step="')[1:]
    return {row.split('"', 1)[0]: row.split("</tr>", 1)[0] for row in rows}


def test_it_counts_each_steps_drops_and_changes_without_storing_a_version(
    planted: None, curator: Client
) -> None:
    dataset = Dataset.objects.create(
        name="chat", sources=["battles"], steps=["normalize", "dedup", "pii"]
    )

    response = curator.get(f"/datasets/{dataset.id}/preview/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="preview-kept">3<' in page and 'data-testid="preview-read">4<' in page
    steps = _steps(page)
    assert list(steps) == ["normalize", "dedup", "pii"]
    assert "<td>4</td>" in steps["dedup"] and 'data-testid="preview-out">3<' in steps["dedup"]
    assert "duplicate" in steps["dedup"] and ": 1" in steps["dedup"]
    assert "pii_redacted: 1" in steps["pii"]  # the planted address is counted as changed
    assert "jane.doe@example.com" not in page
    assert not DatasetVersion.objects.exists()
    assert f"/datasets/{dataset.id}/preview/" in curator.get("/datasets/").content.decode()


def test_it_previews_only_the_first_rows_when_told(planted: None) -> None:
    from collection import datasets

    dataset = Dataset.objects.create(name="chat", sources=["battles"], steps=["dedup"])
    preview = datasets.dataset_preview(dataset=dataset, limit=2)

    assert preview["rows_read"] == 2 and preview["limited"]
    assert preview["steps"][0]["rows_in"] == 2


def test_it_refuses_a_dataset_with_an_unknown_step_and_keeps_contributors_out(
    curator: Client, bob: User
) -> None:
    broken = Dataset.objects.create(name="broken", sources=["battles"], steps=["no-such-step"])

    response = curator.get(f"/datasets/{broken.id}/preview/", follow=True)

    assert response.redirect_chain[-1][0] == "/datasets/"
    assert "no-such-step" in response.content.decode()
    contributor = Client()
    contributor.force_login(bob)
    assert contributor.get(f"/datasets/{broken.id}/preview/").status_code == 302
    assert curator.get("/datasets/987654/preview/").status_code == 404
