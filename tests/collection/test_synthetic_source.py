"""A frozen version's augmentation rows as the source of later dataset versions: the rows keep
their synthetic mark, answer to the source they were made from, and reproduce."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from collection import datasets, tasks
from collection.models import (
    Augmentation,
    AugmentationStatus,
    AugmentedRow,
    Dataset,
    DatasetVersion,
    VersionStatus,
)
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db


def _frozen(dataset: Dataset, django_capture_on_commit_callbacks: Any) -> DatasetVersion:
    with django_capture_on_commit_callbacks(execute=False):
        version = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(version.id)
    version.refresh_from_db()
    assert version.status == VersionStatus.DONE, version.error
    return version


def _augmented(version: DatasetVersion, status: str = AugmentationStatus.DONE) -> Augmentation:
    """A finished augmentation job's rows as the job stores them: one extra reply per source
    row, marked synthetic with the model, prompt and generation that made it."""
    job = Augmentation.objects.create(
        version=version, kinds=["replies"], reply_models=["helper-model"], status=status,
        finished_at=timezone.now() if status == AugmentationStatus.DONE else None,
    )  # fmt: skip
    for position, row in enumerate(datasets.version_rows(version=version)):
        prompt = row["messages"][0]["content"]
        mark = {
            "kind": "reply", "model": "helper-model", "prompt": "{prompt}",
            "messages": [{"role": "user", "content": prompt}],
            "generation": f"gen-{position}", "of": row["id"],
        }  # fmt: skip
        AugmentedRow.objects.create(
            augmentation=job, position=position, kind="reply",
            data={
                "id": f"{row['id']}:reply:helper-model",
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "name": "helper-model", "content": f"Reply to {prompt}"},
                ],
                "synthetic": mark,
            },
        )  # fmt: skip
    return job


def test_it_freezes_augmentation_rows_with_their_synthetic_mark(
    bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    a, b = ModelFactory.create(), ModelFactory.create()
    kept = battle_vote(a, b, "a", prompt="name a prime number")
    revoked = battle_vote(a, b, "b", prompt="tell me a secret", user=bob)
    source = _frozen(
        Dataset.objects.create(name="arena", sources=["battles"], steps=[]),
        django_capture_on_commit_callbacks,
    )
    job = _augmented(source)
    _augmented(source, status=AugmentationStatus.FAILED)  # an unfinished job is no source
    datasets.contributor_revoke(user_id=bob.pk)  # bob's battle leaves later versions

    synthetic = Dataset.objects.create(
        name="synthetic-replies", sources=["synthetic"], steps=["normalize", "pii"]
    )
    version = _frozen(synthetic, django_capture_on_commit_callbacks)

    rows = list(datasets.version_rows(version=version))
    assert [r["source_key"] for r in rows] == [f"battle:{kept.battle_id}"]
    row = rows[0]
    assert row["source"] == "synthetic" and row["augmentation"] == job.id
    assert row["synthetic"]["model"] == "helper-model"
    assert row["synthetic"]["kind"] == "reply"
    assert row["synthetic"]["of"] == row["id"].removesuffix(":reply:helper-model")
    assert row["messages"][1]["content"] == "Reply to name a prime number"
    assert f"battle:{revoked.battle_id}" not in {r["source_key"] for r in rows}
    assert "Synthetic rows" in datasets.datasheet(version)
    assert datasets.manifest_hash(version.manifest) == version.content_hash


def test_it_exports_judged_synthetic_pairs_with_their_mark(
    bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    a, b = ModelFactory.create(), ModelFactory.create()
    battle_vote(a, b, "tie", prompt="2+2?", text_a="4", text_b="5")
    source = _frozen(
        Dataset.objects.create(name="arena", sources=["battles"], steps=[]),
        django_capture_on_commit_callbacks,
    )
    row = next(iter(datasets.version_rows(version=source)))
    job = Augmentation.objects.create(
        version=source, kinds=["judge"], judge_model="judge", status=AugmentationStatus.DONE,
        finished_at=timezone.now(),
    )  # fmt: skip
    turn = [{"role": "user", "content": "2+2?"}]
    mark = {"kind": "judge", "model": "judge", "prompt": "...", "generation": ["g1", "g2"],
            "of": row["id"], "messages": [[], []]}  # fmt: skip
    AugmentedRow.objects.create(
        augmentation=job, position=0, kind="judge",
        data={
            "id": f"{row['id']}:judge:model_a:model_b", "prompt": turn,
            "messages": [*turn, {"role": "assistant", "name": "model_a", "content": "4"},
                         {"role": "assistant", "name": "model_b", "content": "5"}],
            "label": "model_a", "synthetic": mark,
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
    )  # fmt: skip
    version = _frozen(
        Dataset.objects.create(name="judged", sources=["synthetic"], steps=[]),
        django_capture_on_commit_callbacks,
    )
    client = Client()
    client.force_login(bob)

    def lines(name: str) -> list[dict[str, Any]]:
        response = client.get(f"/datasets/v/{version.id}/{name}.jsonl")
        body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        return [json.loads(line) for line in body.splitlines()]

    assert lines("dpo") == [
        {"prompt": turn, "chosen": [{"role": "assistant", "content": "4"}],
         "rejected": [{"role": "assistant", "content": "5"}], "synthetic": mark},
    ]  # fmt: skip
    assert [(r["completion"][0]["content"], r["label"], r["synthetic"]) for r in lines("kto")] == [
        ("4", True, mark),
        ("5", False, mark),
    ]
    assert lines("sft") == [] and lines("battles") == []
