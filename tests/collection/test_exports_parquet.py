"""Parquet exports and quest results: every format as Parquet loads with `datasets`, has the
columns of the TRL trainer it feeds and carries the version's manifest; files are written row group
by row group; accepted reference answers become SFT rows, ranked quest replies preference pairs and
Open-Assistant-shaped conversation trees."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import datasets as hf_datasets
import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import Client
from django.utils import timezone
from trl.data_utils import is_conversational

from arena.apitokens import token_create
from collection import datasets, exports, tasks
from collection.models import (
    Assignment,
    AssignmentState,
    Dataset,
    DatasetVersion,
    QuestItem,
    QuestType,
)
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory, UserFactory

pytestmark = pytest.mark.django_db

COLUMNS = {
    "sft": {"messages"},
    "dpo": {"prompt", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
    "battles": {
        "model_a", "model_b", "winner", "conversation_a", "conversation_b", "turn", "anony",
        "language", "tstamp", "judge",
    },
    "trees": {"message_tree_id", "tree_state", "prompt"},
}  # fmt: skip


def _submitted(item: QuestItem, user: User, answer: dict[str, Any], ago: int) -> Assignment:
    now = timezone.now() - timedelta(minutes=ago)
    return Assignment.objects.create(
        item=item, user=user, state=AssignmentState.SUBMITTED, leased_until=now, answer=answer,
        submitted_at=now,
    )  # fmt: skip


def quest_results() -> dict[str, Any]:
    """A reference answer accepted by its review, one rejected, a ranked item with consensus
    (B before A before C), one all bad, and one still open: as the quest services leave them."""
    writer, ranker = UserFactory.create(), UserFactory.create()
    results: dict[str, Any] = {}
    for verdicts, text in ((["reject", "accept"], "Paris."), (["accept", "reject"], "Lyon.")):
        ask = QuestItem.objects.create(
            type=QuestType.REFERENCE, prompt="capital of France?", open_slots=0, overlap=1
        )
        reference = _submitted(ask, writer, {"text": text}, ago=30)
        for minutes, verdict in zip((20, 10), verdicts, strict=True):
            review = QuestItem.objects.create(
                type=QuestType.REVIEW, prompt=ask.prompt, open_slots=0, overlap=1,
                replies=[{"key": "reference", "text": text}], reviewed=reference,
            )  # fmt: skip
            _submitted(review, UserFactory.create(), {"verdict": verdict, "note": ""}, minutes)
        results[text] = reference
    replies = [
        {"key": "a", "text": "ok"},
        {"key": "b", "text": "best"},
        {"key": "c", "text": "bad"},
    ]
    ranked = QuestItem.objects.create(
        type=QuestType.RANK, prompt="a haiku", open_slots=0, overlap=1, replies=replies,
        consensus={"top": "b", "points": {"a": 2, "b": 3, "c": 1}, "all_bad": 0},
    )  # fmt: skip
    _submitted(ranked, ranker, {"all_bad": False, "order": ["b", "a", "c"]}, ago=5)
    bad = QuestItem.objects.create(
        type=QuestType.RANK, prompt="a limerick", open_slots=0, overlap=1, replies=replies[:2],
        consensus={"top": "all_bad", "points": {}, "all_bad": 1},
    )  # fmt: skip
    _submitted(bad, ranker, {"all_bad": True, "order": []}, ago=5)
    QuestItem.objects.create(type=QuestType.RANK, prompt="open", open_slots=1, replies=replies)
    return results | {"ranked": ranked, "bad": bad}


@pytest.fixture
def version(django_capture_on_commit_callbacks: Any) -> DatasetVersion:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    battle_vote(a, b, "a", prompt="what is 2+2?", text_a="4", text_b="5")
    battle_vote(a, None, "up", prompt="a joke", text_a="knock knock")
    quest_results()
    dataset = Dataset.objects.create(
        name="everything", sources=["battles", "direct", "quests"], steps=["pii"]
    )
    with django_capture_on_commit_callbacks(execute=False):
        created = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(created.id)
    return DatasetVersion.objects.get(id=created.id)


def _download(client: Client, url: str, path: Path) -> Path:
    response = client.get(url)
    assert response.status_code == 200, response
    assert isinstance(response, StreamingHttpResponse)
    path.write_bytes(b"".join(response.streaming_content))  # type: ignore[arg-type]
    return path


def test_it_exports_every_format_as_parquet_with_its_trainers_columns_and_the_manifest(
    version: DatasetVersion, tmp_path: Path
) -> None:
    _, raw = token_create(user=UserFactory.create(), name="parquet")
    script = Client(headers={"Authorization": f"Bearer {raw}"})
    loaded = {}
    for name, columns in COLUMNS.items():
        path = _download(script, f"/datasets/v/{version.id}/{name}.parquet", tmp_path / name)
        metadata = pq.read_metadata(path).metadata
        manifest = json.loads(metadata[exports.MANIFEST_KEY.encode()])
        assert manifest["content_hash"] == version.content_hash and manifest["version"] == 1
        data = hf_datasets.load_dataset(
            "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
        )
        assert isinstance(data, hf_datasets.Dataset)
        assert set(data.column_names) == columns, name
        loaded[name] = data
    for name in ("sft", "dpo", "kto"):
        assert all(is_conversational(row) for row in loaded[name]), name

    # The SFT file: the battle's winner, the thumbs-up chat, the accepted reference answer.
    assert [r["messages"][-1]["content"] for r in loaded["sft"]] == ["4", "knock knock", "Paris."]
    # DPO: the battle, then the ranked item's pairs (b>a, b>c, a>c); the all-bad item gives none.
    pairs = [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in loaded["dpo"]]
    assert pairs == [("4", "5"), ("best", "ok"), ("best", "bad"), ("ok", "bad")]
    assert loaded["dpo"][1]["prompt"] == [{"role": "user", "content": "a haiku"}]
    kto = [(r["completion"][0]["content"], r["label"]) for r in loaded["kto"]]
    assert kto[-6:] == [
        ("Paris.", True),
        ("best", True), ("ok", False), ("bad", False),
        ("ok", False), ("best", False),
    ]  # fmt: skip
    assert loaded["battles"]["winner"] == ["model_a"]

    # The same rows as JSON Lines (the API's plain name) and as Parquet (its .parquet name).
    api = script.get(f"/api/v1/datasets/versions/{version.id}").json()
    assert set(api["files"]) == {f"{n}{ext}" for n in COLUMNS for ext in ("", ".parquet")}
    lines = _download(script, api["files"]["trees"], tmp_path / "trees.jsonl").read_text()
    assert [json.loads(line) for line in lines.splitlines()] == loaded["trees"].to_list()
    via_api = _download(script, api["files"]["dpo.parquet"], tmp_path / "dpo.parquet")
    assert pq.read_table(via_api).to_pylist() == loaded["dpo"].to_list()
    assert script.get(f"/api/v1/datasets/versions/{version.id}/files/dpo.xml").status_code == 404


def test_it_shapes_ranked_replies_as_open_assistant_trees(version: DatasetVersion) -> None:
    trees = list(exports.records("trees", datasets.version_rows(version=version)))
    ranked = trees[0]
    item = ranked["prompt"]
    assert ranked["message_tree_id"] == item["message_id"] and ranked["tree_state"] == (
        "ready_for_export"
    )
    assert (item["role"], item["text"], item["parent_id"]) == ("prompter", "a haiku", None)
    assert [(r["text"], r["rank"], r["role"]) for r in item["replies"]] == [
        ("best", 0, "assistant"),
        ("ok", 1, "assistant"),
        ("bad", 2, "assistant"),
    ]
    assert {r["parent_id"] for r in item["replies"]} == {item["message_id"]}
    assert trees[1]["prompt"]["all_bad"] is True and len(trees) == 2  # the open item waits


def test_it_writes_parquet_row_group_by_row_group() -> None:
    rows = (
        {"source": "direct", "label": True, "messages": [
            {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}
        ]}
        for i in range(2500)
    )  # fmt: skip
    chunks = list(exports.parquet_chunks("sft", rows, manifest={"v": 1}, rows_per_group=1000))
    assert len(chunks) == 3  # two full row groups handed on as written, then the rest and footer
    table = pq.ParquetFile(io.BytesIO(b"".join(chunks)))
    assert table.metadata.num_row_groups == 3 and table.metadata.num_rows == 2500
    assert table.read().column("messages")[2499].as_py()[1]["content"] == "a2499"


def test_it_reads_quest_results_up_to_the_cutoff_and_revokes_a_writers_answers() -> None:
    results = quest_results()
    # A quarter of an hour ago, Lyon's latest review had accepted it and Paris's had rejected it;
    # nothing was ranked yet.
    early = timezone.now() - timedelta(minutes=15)
    assert [r["id"] for r in datasets.quest_rows(until=early)] == [
        f"reference:{results['Lyon.'].id}"
    ]
    now = [r["id"] for r in datasets.quest_rows(until=timezone.now())]
    assert now == [
        f"reference:{results['Paris.'].id}",
        f"rank:{results['ranked'].id}",
        f"rank:{results['bad'].id}",
    ]
    # The writer deletes their account: their answers leave every dataset.
    writer = results["Paris."].user
    assert datasets.contributor_revoke(user_id=writer.id) == 2
    sources = datasets.source_rows(sources=["quests"], until=timezone.now())
    assert [r["kind"] for r in sources] == ["rank", "rank"]
