"""Augmentation through the serving pool: paraphrases, extra replies and judge labels in both
orders, every synthetic row marked with the model and the prompt that made it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from collection import augment, datasets
from collection.models import (
    Augmentation,
    AugmentationStatus,
    Dataset,
    DatasetVersion,
    VersionStatus,
)
from modelhub.models import Generation, GenerationStatus, Model
from tests.collection.dataset_helpers import battle_vote
from tests.factories import EndpointFactory, ModelFactory
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)  # the pool's workers read committed rows


def _served(upstream: Any, name: str, served_name: str) -> Model:
    model = ModelFactory.create(name=name, served_name=served_name)
    EndpointFactory.create(model=model, base_url=upstream.base_url)
    return model


def _frozen_version(models: tuple[Model, Model]) -> DatasetVersion:
    a, b = models
    battle_vote(a, b, "a", prompt="how do plants drink water", text_a="roots", text_b="leaves")
    battle_vote(a, b, "b", prompt="name a prime number", text_a="four", text_b="seven")
    dataset = Dataset.objects.create(name="augment-me", sources=["battles"], steps=["normalize"])
    version = datasets.dataset_version_create(dataset=dataset)  # frozen by the pipeline worker
    wait_for(
        lambda: DatasetVersion.objects.get(id=version.id).status == VersionStatus.DONE, timeout=60
    )
    return DatasetVersion.objects.get(id=version.id)


def _done(job: Augmentation) -> Augmentation:
    wait_for(
        lambda: (
            Augmentation.objects.get(id=job.id).status
            in (AugmentationStatus.DONE, AugmentationStatus.FAILED)
        ),
        timeout=120,
    )
    job.refresh_from_db()
    assert job.status == AugmentationStatus.DONE, job.error
    return job


def test_it_paraphrases_adds_replies_and_judges_both_orders_through_the_pool(
    upstream: Any, celery_worker: str
) -> None:
    Model.objects.update(enabled=False)
    a, b = _served(upstream, "side-a", "fake"), _served(upstream, "side-b", "fake")
    version = _frozen_version((a, b))
    _served(upstream, "parrot", "fake-say")  # repeats its prompt: the paraphrase shows it
    _served(upstream, "other", "fake")
    _served(upstream, "judge", "fake-say")

    job = augment.augmentation_create(
        version=version,
        kinds=["paraphrase", "replies", "judge"],
        paraphrase_model="parrot",
        reply_models=["other"],
        judge_model="judge",
    )
    job = _done(job)

    rows = list(augment.augmentation_rows(augmentation=job))
    kinds = [row["synthetic"]["kind"] for row in rows]
    assert sorted(kinds) == ["judge", "judge", "paraphrase", "paraphrase", "reply", "reply"]
    assert job.counts == {
        "read": 2, "paraphrase": 2, "reply": 2, "judge": 2, "judge_inconsistent": 2,
    }  # fmt: skip
    sources = {row["id"] for row in datasets.version_rows(version=version)}
    for row in rows:
        mark = row["synthetic"]
        assert mark["of"] in sources
        assert (
            mark["model"]
            == {"paraphrase": "parrot", "reply": "other", "judge": "judge"}[mark["kind"]]
        )
        generations = mark["generation"] if mark["kind"] == "judge" else [mark["generation"]]
        stored = Generation.objects.filter(id__in=generations, status=GenerationStatus.DONE)
        assert stored.count() == len(generations)  # made by the pool, stored by modelhub
    paraphrase = next(r for r in rows if r["synthetic"]["kind"] == "paraphrase")
    assert paraphrase["synthetic"]["prompt"] == augment.PARAPHRASE_PROMPT
    assert "Rewrite the following request" in paraphrase["messages"][0]["content"]
    reply = next(r for r in rows if r["synthetic"]["kind"] == "reply")
    assert reply["messages"][1]["content"].startswith("t0 t1")  # the fake model's answer

    judged = next(r for r in rows if r["synthetic"]["kind"] == "judge")
    assert judged["synthetic"]["prompt"] == augment.JUDGE_PROMPT
    first, second = judged["judgements"]
    # Both orders stored: the reply under review is answer B once and answer A once.
    assert first["order"] == ["side-a", "other"] and second["order"] == ["other", "side-a"]
    ab, ba = judged["synthetic"]["messages"]
    assert ab[0]["content"].index("t0 t1") > ba[0]["content"].index("t0 t1")
    # The parrot judge always says "A" (the first word it repeats): position bias, caught.
    assert (first["verdict"], second["verdict"]) == ("side-a", "other")
    assert judged["label"] == "inconsistent" and "chosen" not in judged


def test_it_judges_a_battles_two_sides_and_refuses_what_it_cannot_run(
    upstream: Any, celery_worker: str
) -> None:
    Model.objects.update(enabled=False)
    a, b = _served(upstream, "side-a", "fake"), _served(upstream, "side-b", "fake")
    version = _frozen_version((a, b))
    bad: dict[str, Any]
    for bad in (
        {"kinds": []},
        {"kinds": ["judge"], "judge_model": "nobody"},
        {"kinds": ["replies"], "reply_models": []},
        {"kinds": ["shout"]},
    ):
        with pytest.raises(augment.AugmentationError):
            augment.augmentation_create(version=version, **bad)
    assert not Augmentation.objects.exists()
    _served(upstream, "judge", "fake-say")

    job = _done(augment.augmentation_create(version=version, kinds=["judge"], judge_model="judge"))

    rows = list(augment.augmentation_rows(augmentation=job))
    assert len(rows) == 2 and {r["synthetic"]["kind"] for r in rows} == {"judge"}
    orders = [j["order"] for j in rows[0]["judgements"]]
    assert orders == [["side-a", "side-b"], ["side-b", "side-a"]]
    assert all(len(r["synthetic"]["generation"]) == 2 for r in rows)


def test_it_lets_staff_augment_from_the_version_page_and_download_the_rows(
    upstream: Any, celery_worker: str, alice: User, bob: User
) -> None:
    Model.objects.update(enabled=False)
    a, b = _served(upstream, "side-a", "fake"), _served(upstream, "side-b", "fake")
    version = _frozen_version((a, b))
    _served(upstream, "parrot", "fake-say")
    alice.is_superuser = True  # holds every curation permission
    alice.save()
    staff, contributor = Client(), Client()
    staff.force_login(alice)
    contributor.force_login(bob)
    url = f"/datasets/v/{version.id}/augment/"
    form = {"kinds": ["paraphrase"], "paraphrase_model": "parrot", "limit": "1"}
    assert 'id="augment-form"' in staff.get(f"/datasets/v/{version.id}/").content.decode()
    assert contributor.post(url, form).status_code == 302  # to the admin's login
    assert staff.post(url, {**form, "kinds": ["shout"]}).status_code == 400
    assert staff.post(url, {**form, "paraphrase_model": "nobody"}).status_code == 400
    assert not Augmentation.objects.exists()

    assert staff.post(url, form)["Location"] == f"/datasets/v/{version.id}/"

    job = _done(Augmentation.objects.get())
    download = staff.get(f"/datasets/v/{version.id}/augmentations/{job.id}.jsonl")
    lines = b"".join(download.streaming_content).decode().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["synthetic"]["kind"] == "paraphrase" and row["synthetic"]["model"] == "parrot"
    assert (
        contributor.get(f"/datasets/v/{version.id}/augmentations/{job.id}.jsonl").status_code == 302
    )
