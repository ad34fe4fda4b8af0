"""Frozen dataset versions: the freeze (rows, report, hash, datasheet), reproducing a manifest,
the pipeline queue, and revocation when an account is deleted."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from collection import datasets, tasks
from collection.models import Dataset, DatasetVersion, RevokedSource, VersionStatus
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory
from tests.helpers import start_worker, stop_worker, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def arena_rows(bob: User, charlie: User) -> dict[str, Any]:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    votes = {
        "email": battle_vote(a, b, "a", prompt="write to jane.doe@example.com please", user=bob),
        "plain": battle_vote(a, b, "b", prompt="what is a prime number?", user=charlie),
        "copy": battle_vote(a, b, "b", prompt="what is a prime number?", user=charlie),
        "tie": battle_vote(a, b, "tie", prompt="tell me a joke", text_a="x", text_b="y"),
        "direct": battle_vote(a, None, "up", prompt="summarise the news", user=charlie),
    }
    return {"votes": votes, "models": (a, b)}


def _frozen(dataset: Dataset, django_capture_on_commit_callbacks: Any) -> DatasetVersion:
    with django_capture_on_commit_callbacks(execute=False):
        version = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(version.id)
    version.refresh_from_db()
    assert version.status == VersionStatus.DONE, version.error
    return version


def _dataset(**fields: Any) -> Dataset:
    return Dataset.objects.create(
        name=fields.pop("name", "arena-chat"),
        sources=fields.pop("sources", ["battles", "direct"]),
        steps=fields.pop("steps", ["normalize", "dedup", "pii"]),
        **fields,
    )


def test_it_freezes_rows_counts_per_step_a_hash_and_a_datasheet(
    arena_rows: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    version = _frozen(_dataset(), django_capture_on_commit_callbacks)

    assert version.rows_read == 5
    assert version.row_count == 4  # the copy of the prime-number battle is gone
    steps = {s["name"]: s for s in version.report["steps"]}
    assert list(steps) == ["normalize", "dedup", "pii"]
    assert steps["dedup"]["dropped"] == {"exact_duplicate": 1}
    assert steps["pii"]["changed"] == {"pii_redacted": 1}
    rows = list(datasets.version_rows(version=version))
    assert {r["source"] for r in rows} == {"battles", "direct"}
    assert not any("jane.doe@example.com" in str(r) for r in rows)
    assert len(version.content_hash) == 64
    assert version.manifest["code_version"].startswith(("git:", "ludus:"))
    for heading in ("## Where from", "## Filters", "## Languages", "## Licence", "## Consent"):
        assert heading in version.datasheet
    assert "exact_duplicate" in version.datasheet and "CC-BY-4.0" in version.datasheet


def test_it_reproduces_a_version_from_its_manifest(
    arena_rows: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    version = _frozen(_dataset(), django_capture_on_commit_callbacks)
    a, b = arena_rows["models"]
    battle_vote(a, b, "a", prompt="a battle after the freeze")  # past the manifest's cut-off

    assert datasets.manifest_hash(version.manifest) == version.content_hash
    other = dict(version.manifest, steps=["normalize", "pii"])  # no dedup: the copy stays
    assert datasets.manifest_hash(other) != version.content_hash
    later = _frozen(Dataset.objects.get(), django_capture_on_commit_callbacks)
    assert (later.number, later.row_count) == (2, version.row_count + 1)


def test_it_refuses_an_unknown_step_or_source(db: None) -> None:
    cases: list[dict[str, Any]] = [{"steps": ["nope"]}, {"sources": ["quests?"]}, {"sources": []}]
    for fields in cases:
        with pytest.raises(datasets.DatasetError):
            datasets.dataset_version_create(dataset=_dataset(**fields))
        Dataset.objects.all().delete()
    assert not DatasetVersion.objects.exists()


@pytest.mark.django_db(transaction=True)  # the worker reads committed rows
def test_it_freezes_on_a_pipeline_worker(
    arena_rows: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    worker, _ = start_worker(queues="pipeline", concurrency=1)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            version = datasets.dataset_version_create(dataset=_dataset())
        wait_for(
            lambda: DatasetVersion.objects.get(id=version.id).status == VersionStatus.DONE,
            timeout=60,
        )
    finally:
        stop_worker(worker)
    assert DatasetVersion.objects.get(id=version.id).row_count == 4


def test_it_leaves_a_deleted_account_out_of_later_versions_and_downloads(
    arena_rows: dict[str, Any], bob: User, alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    first = _frozen(_dataset(), django_capture_on_commit_callbacks)
    bob_battle = str(arena_rows["votes"]["email"].battle_id)
    assert any(r["battle_id"] == bob_battle for r in datasets.version_rows(version=first))

    bob.delete()

    assert RevokedSource.objects.filter(key=f"battle:{bob_battle}").exists()
    first.refresh_from_db()
    assert first.row_count == 4  # the version itself is immutable ...
    assert datasets.version_revoked_count(version=first) == 1  # ... and lists the row revoked
    kept = list(datasets.version_rows(version=first))
    assert len(kept) == 3 and all(r["battle_id"] != bob_battle for r in kept)
    staff = Client()
    alice.groups.add(Group.objects.get(name="curator"))
    staff.force_login(alice)
    download = staff.get(f"/datasets/v/{first.id}/battles.jsonl")
    body = b"".join(download.streaming_content)  # type: ignore[attr-defined]
    assert bob_battle.encode() not in body and body.count(b"\n") == 2  # a direct chat is no battle
    assert "1 revoked" in staff.get(f"/datasets/v/{first.id}/").content.decode()
    later = _frozen(Dataset.objects.get(), django_capture_on_commit_callbacks)
    assert later.rows_read == 4 and later.row_count == 3


def test_it_lets_staff_freeze_from_the_datasets_page(
    arena_rows: dict[str, Any], alice: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    dataset = _dataset()
    staff, contributor = Client(), Client()
    alice.groups.add(Group.objects.get(name="curator"))
    staff.force_login(alice)
    contributor.force_login(bob)
    assert contributor.post(f"/datasets/{dataset.id}/freeze/").status_code == 302  # to admin login
    assert not DatasetVersion.objects.exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(f"/datasets/{dataset.id}/freeze/")
    version = DatasetVersion.objects.get()
    assert response["Location"] == f"/datasets/v/{version.id}/" and len(callbacks) == 1
    tasks.dataset_freeze(version.id)
    page = staff.get(f"/datasets/v/{version.id}/").content.decode()
    assert "Frozen" in page and version.dataset.name in staff.get("/datasets/").content.decode()
    assert (
        staff.get(f"/datasets/v/{version.id}/datasheet.md").content.decode().startswith("# arena")
    )
