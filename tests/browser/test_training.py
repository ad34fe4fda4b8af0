"""Staff launch a fine-tuning job from its page, watch its loss curve grow while a train worker
trains it, promote the model into the arena, and see it battle there: the local engine answers
for it through a generation worker, and the vote reveals it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from arena.models import Battle
from collection.datasets import version_rows
from collection.models import DatasetVersion, FinetuneJob, JobState
from collection.training import data
from ludus_dev.fake_upstream import free_port
from modelhub.models import Endpoint, Model
from modelhub.selectors import models_available
from modelhub.zoo.serving import engine_server
from tests.factories import PASSWORD, UserFactory
from tests.helpers import ROOT, database_url_for_tests, start_worker, stop_worker
from tests.training.conftest import BASE, JUDGE, hub, version, zoo_dir  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


@pytest.fixture
def own_site(hub: dict[str, Model], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    """The web, a train worker, a generation worker and the local engine, whose models and data
    directories are this test's own."""
    monkeypatch.setenv("LUDUS_MODELS_DIR", str(settings.MODELS_DIR))
    monkeypatch.setenv("LUDUS_DATA_DIR", str(settings.DATA_DIR))
    stack = contextlib.ExitStack()
    engine = stack.enter_context(engine_server(settings.MODELS_DIR)) + "/v1"
    Endpoint.objects.update(base_url=engine)  # the hub's models, and those promoted from here on
    monkeypatch.setenv("LUDUS_LOCAL_ENGINE_URL", engine)
    worker, _ = start_worker(queues="train", concurrency=1)
    generator, _ = start_worker(queues="gen.local", concurrency=4)
    port = free_port()
    env = dict(os.environ) | {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "LUDUS_SECURE_COOKIES": "0",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert web.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        yield url
    finally:
        web.terminate()
        web.wait(10)
        stop_worker(worker)
        stop_worker(generator)
        stack.close()


def _points(page: Page) -> int:
    curve = page.locator("#loss-curve polyline")
    return int(curve.get_attribute("data-points") or 0) if curve.count() else 0


def test_it_lets_staff_launch_watch_and_promote_a_job(
    page: Page,
    own_site: str,
    version: DatasetVersion,  # noqa: F811
) -> None:
    UserFactory.create(username="trainer", is_staff=True, is_superuser=True)
    page.goto(own_site + "/accounts/login/?next=/training/")
    page.fill("#id_username", "trainer")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.get_by_label("Dataset version").select_option(label=str(version))
    page.get_by_label("Method").select_option("sft")
    page.get_by_label("Base model").select_option(BASE)
    page.get_by_label("Judge (optional)").select_option(JUDGE)
    hyperparameters = {"max_steps": 150, "save_steps": 50, "test_fraction": 0.25}
    page.get_by_label("Hyperparameters").fill(json.dumps(hyperparameters | {"judge_prompts": 2}))
    page.get_by_role("button", name="Launch").click()

    expect(page.get_by_test_id("job-state")).to_have_text("Training", timeout=60_000)
    deadline = time.monotonic() + 60
    while (seen := _points(page)) < 1 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    first = seen
    while (seen := _points(page)) <= first and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert 1 <= first < seen  # the curve grew on the open page, without a reload

    expect(page.get_by_test_id("job-state")).to_have_text("Trained and evaluated", timeout=120_000)
    expect(page.locator("#gate")).to_contain_text("Held-out loss after")
    # The held-out split is decided by the rows' ids, so its size varies with the database's
    # sequences: the judge sees each held-out prompt (two at most) in both orders.
    _, test = data.split(version_rows(version=version), hyperparameters["test_fraction"])
    expect(page.locator("#verdicts tbody tr")).to_have_count(2 * min(2, len(test)))
    page.get_by_role("button", name="Promote into the arena").click()
    expect(page.get_by_test_id("promoted")).to_contain_text(f"{BASE}-ft")

    job = FinetuneJob.objects.get()
    assert job.state == JobState.PROMOTED and job.step == 150
    promoted = job.promoted_model
    assert promoted is not None and promoted in models_available()

    # In the arena with its base (the judge sits out), the new model battles and the vote names it.
    Model.objects.filter(name=JUDGE).update(arena_eligible=False)
    earlier = set(Battle.objects.values_list("id", flat=True))  # the dataset's battles
    page.goto(own_site + "/")
    page.get_by_test_id("prompt-input").fill("what is two plus two?")
    page.get_by_test_id("send").click()
    for side in ("a", "b"):
        expect(page.get_by_test_id(f"answer-{side}")).not_to_be_empty(timeout=60_000)
    expect(page.get_by_test_id("vote-a")).to_be_enabled(timeout=60_000)
    page.get_by_test_id("vote-a").click()
    expect(page.get_by_test_id("verdict")).to_be_visible()
    battle = Battle.objects.exclude(id__in=earlier).get()
    assert promoted.id in (battle.model_a_id, battle.model_b_id)
    side = "a" if battle.model_a_id == promoted.id else "b"
    expect(page.get_by_test_id(f"model-name-{side}")).to_have_text(promoted.label)
    turn = battle.turns.get()
    for generation in (turn.generation_a, turn.generation_b):  # the engine answered for both
        assert generation is not None and generation.status == "done" and generation.text
