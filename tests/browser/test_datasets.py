"""A curator redacts a passage of one reported battle and approves it, rejects another in the review
queue, freezes a dataset version, a pipeline worker freezes it, and the curator reads its datasheet
and downloads its SFT file as JSON Lines and as Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from collection.models import Dataset
from tests.collection.dataset_helpers import battle_vote
from tests.factories import PASSWORD, ModelFactory, UserFactory
from tests.helpers import start_worker, stop_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_it_walks_a_curator_from_the_datasets_page_to_a_frozen_download(
    page: Page, asgi_server: Any, tmp_path: Path
) -> None:
    curator = UserFactory.create(username="curator", is_staff=True)
    curator.groups.add(Group.objects.get(name="curator"))
    a, b = ModelFactory.create(name="zoo-a"), ModelFactory.create(name="zoo-b")
    battle_vote(a, b, "b", prompt="mail me at someone@example.org", text_b="sure")
    battle_vote(a, b, "a", prompt="what is 6*7?", text_a="42", text_b="41")
    reported = battle_vote(a, b, "a", prompt="buy cheap pills", text_a="ok").battle
    reported.flagged, reported.flag_reason = True, "spam"
    reported.save()
    doxxed = battle_vote(
        a, b, "a", prompt="where do I live?", text_a="at 12 Baker Street", text_b="no idea"
    ).battle
    doxxed.flagged, doxxed.flag_reason = True, "an address"
    doxxed.save()
    Dataset.objects.create(name="arena-sft", sources=["battles"], steps=["pii", "quality"])

    page.goto(asgi_server.url + "/accounts/login/?next=/datasets/review/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    address = page.get_by_test_id("review-item").filter(has_text="an address")
    expect(address).to_contain_text("at 12 Baker Street")
    address.get_by_label("Passage").fill("12 Baker Street")
    address.get_by_role("button", name="Apply").click()  # Redact is the default change
    address = page.get_by_test_id("review-item").filter(has_text="an address")
    expect(address).to_contain_text("at [REDACTED]")
    expect(address).to_contain_text("Redacted 15 characters by curator")
    address.get_by_role("button", name="Approve").click()

    item = page.get_by_test_id("review-item")
    expect(item).to_contain_text("spam")
    item.get_by_label("Note").fill("advertising")
    item.get_by_role("button", name="Reject").click()
    expect(page.get_by_text("Nothing waits.")).to_be_visible()
    expect(page.locator("body")).to_contain_text(
        "Rejected (left out of datasets) by curator: advertising"
    )
    page.get_by_role("link", name="Datasets").click()
    expect(page.get_by_role("heading", name="arena-sft")).to_be_visible()

    worker, _ = start_worker(queues="pipeline", concurrency=1)
    try:
        page.get_by_role("button", name="Freeze a new version").click()
        expect(page.get_by_role("heading", name="arena-sft v1")).to_be_visible()
        for _ in range(60):
            if page.locator("#version-status").inner_text() == "Frozen":
                break
            page.wait_for_timeout(500)
            page.reload()
    finally:
        stop_worker(worker)
    expect(page.locator("#version-status")).to_have_text("Frozen")
    expect(page.locator("pre")).to_contain_text("pii_redacted")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="sft.jsonl").click()
    path = tmp_path / "sft.jsonl"
    download_info.value.save_as(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["messages"][-1]["content"] for r in rows] == ["sure", "42", "at [REDACTED]"]
    assert "someone@example.org" not in path.read_text()  # redacted by the pipeline
    assert "Baker" not in path.read_text()  # redacted by the curator
    assert "pills" not in path.read_text()  # rejected

    with page.expect_download() as download_info:
        page.get_by_role("link", name="sft.parquet").click()
    parquet = tmp_path / "sft.parquet"
    download_info.value.save_as(parquet)
    assert pq.read_table(parquet).to_pylist() == rows
