"""Exports of a frozen version: each format streams as JSON Lines, loads with `datasets`, and has
the columns of the TRL trainer it feeds (TRL's dataset formats: SFT "messages"; DPO conversational
preference "prompt"/"chosen"/"rejected"; KTO unpaired preference "prompt"/"completion"/"label")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets as hf_datasets
import pytest
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import Client

from arena.apitokens import token_create
from collection import datasets, tasks
from collection.models import Dataset, DatasetVersion
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db

COLUMNS = {
    "sft": {"messages"},
    "dpo": {"prompt", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
    "battles": {
        "model_a", "model_b", "winner", "conversation_a", "conversation_b", "turn", "anony",
        "language", "tstamp", "judge",
    },
}  # fmt: skip


@pytest.fixture
def version(bob: User, django_capture_on_commit_callbacks: Any) -> DatasetVersion:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    battle_vote(a, b, "a", prompt="what is 2+2?", text_a="4", text_b="5", user=bob)
    battle_vote(a, b, "b", prompt="name a colour", text_a="", text_b="blue")
    battle_vote(a, b, "bothbad", prompt="a haiku", text_a="no", text_b="nope")
    battle_vote(a, b, "tie", prompt="hi", text_a="hello", text_b="hey")
    battle_vote(a, None, "down", prompt="a limerick", text_a="there once was")
    dataset = Dataset.objects.create(name="mixed", sources=["battles", "direct"], steps=[])
    with django_capture_on_commit_callbacks(execute=False):
        created = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(created.id)
    return DatasetVersion.objects.get(id=created.id)


def _load(client: Client, url: str, tmp_path: Path, name: str) -> hf_datasets.Dataset:
    response = client.get(url)
    assert response.status_code == 200, response
    assert isinstance(response, StreamingHttpResponse)
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    loaded = hf_datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert isinstance(loaded, hf_datasets.Dataset)
    return loaded


def test_it_exports_each_format_with_the_columns_its_trainer_expects(
    version: DatasetVersion, bob: User, tmp_path: Path
) -> None:
    _, raw = token_create(user=bob, name="exports")
    script = Client(headers={"Authorization": f"Bearer {raw}"})
    loaded = {
        name: _load(script, f"/datasets/v/{version.id}/{name}.jsonl", tmp_path, name)
        for name in COLUMNS
    }
    for name, columns in COLUMNS.items():
        assert set(loaded[name].column_names) == columns, name

    sft = loaded["sft"]
    assert sft.num_rows == 2  # two battles with a winner; the thumbs-down chat is no example
    assert sft[0]["messages"] == [
        {"role": "user", "content": "what is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    dpo = loaded["dpo"]
    assert dpo.num_rows == 2
    assert dpo[1] == {
        "prompt": [{"role": "user", "content": "name a colour"}],
        "chosen": [{"role": "assistant", "content": "blue"}],
        "rejected": [{"role": "assistant", "content": ""}],
    }
    kto = loaded["kto"]
    assert kto.features["label"].dtype == "bool"
    # Two sides of each decided battle (both bad: both False) and the direct chat; no tie.
    assert kto["label"] == [True, False, False, True, False, False, False]
    assert kto[-1]["completion"] == [{"role": "assistant", "content": "there once was"}]
    battles = loaded["battles"]
    assert battles["winner"] == ["model_a", "model_b", "tie (bothbad)", "tie"]
    assert battles[0]["conversation_b"][-1] == {"role": "assistant", "content": "5"}


def test_it_serves_the_manifest_with_every_download(version: DatasetVersion, bob: User) -> None:
    client = Client()
    client.force_login(bob)
    download = client.get(f"/datasets/v/{version.id}/sft.jsonl")
    assert download["X-Content-SHA256"] == version.content_hash
    assert download["Link"] == f'</datasets/v/{version.id}/manifest.json>; rel="describedby"'
    manifest = client.get(f"/datasets/v/{version.id}/manifest.json").json()
    assert manifest["content_hash"] == version.content_hash
    assert manifest["manifest"]["sources"] == ["battles", "direct"]
    assert manifest["rows"] == 5 and manifest["rows_revoked"] == 0
    assert datasets.manifest_hash(manifest["manifest"]) == version.content_hash


def test_it_refuses_unknown_formats_pending_versions_and_callers_without_access(
    version: DatasetVersion, bob: User
) -> None:
    client = Client()
    assert client.get(f"/datasets/v/{version.id}/sft.jsonl").status_code == 401
    client.force_login(bob)
    assert client.get(f"/datasets/v/{version.id}/parquet.jsonl").status_code == 404
    DatasetVersion.objects.filter(id=version.id).update(status="running")
    assert client.get(f"/datasets/v/{version.id}/sft.jsonl").status_code == 404
