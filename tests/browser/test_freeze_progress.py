"""A curator watches a freeze on the version page: the progress panel updates itself (htmx polling,
no inline script) as the shard finishes, and the page turns into the frozen version's."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import Page, expect

from collection import datasets, shards
from collection.models import Dataset, DatasetRun, DatasetVersion
from tests.collection.dataset_helpers import battle_vote
from tests.factories import PASSWORD, ModelFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def _pending_version(dataset: Dataset, shard_rows: int) -> DatasetVersion:
    """A version as the freeze button makes it, minus the task it sends: a worker other tests
    started (it serves every queue) would otherwise freeze it before the page is open."""
    manifest = {
        "dataset": dataset.name,
        "sources": dataset.sources,
        "until": timezone.now().isoformat(),
        "steps": dataset.steps,
        "params": dataset.params,
        "licence": dataset.licence,
        "code_version": datasets.code_version(),
    }
    version = DatasetVersion.objects.create(dataset=dataset, number=1, manifest=manifest)
    DatasetRun.objects.create(version=version, shard_rows=shard_rows)
    return version


def test_it_shows_a_freeze_progressing_shard_by_shard_until_frozen(
    page: Page, asgi_server: Any
) -> None:
    curator = UserFactory.create(username="curator", is_staff=True)
    curator.groups.add(Group.objects.get(name="curator"))
    a, b = ModelFactory.create(name="zoo-a"), ModelFactory.create(name="zoo-b")
    for n in range(6):
        battle_vote(a, b, "a", prompt=f"question {n}: what is {n} plus {n}?", text_a=str(2 * n))
    dataset = Dataset.objects.create(name="watched", sources=["battles"], steps=["dedup", "pii"])
    # One shard: a freeze of more sends copies of its task for the other shards, which a worker
    # other tests started would take.
    version = _pending_version(dataset, shard_rows=10)
    shards.dataset_version_freeze(version_id=version.id, units=0)  # the sources read, no more

    page.goto(asgi_server.url + f"/accounts/login/?next=/datasets/v/{version.id}/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#freeze-progress")).to_contain_text("6 rows read from the sources")
    stages = page.locator("#progress-stages")
    expect(stages.locator("tr.current")).to_contain_text("0 / 1")
    expect(page.locator("#progress-shards")).to_contain_text("pending")

    shards.dataset_version_freeze(version_id=version.id, units=1)  # the test is the worker
    expect(page.locator("#progress-shards")).to_contain_text("done")  # no reload: it polls
    expect(stages.locator("tr.current")).to_contain_text("1 / 1")
    expect(page.locator("#progress-steps")).to_contain_text("dedup")

    shards.dataset_version_freeze(version_id=version.id)
    expect(page.locator("#version-status")).to_have_text("Frozen", timeout=15_000)
    expect(page.get_by_role("link", name="sft.jsonl")).to_be_visible()
