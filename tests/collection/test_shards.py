"""Freezing a version in shards: the same rows and hash as one stream, near-dedup across shards,
progress on the staff page, and resuming after a killed worker without redoing finished shards."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from collection import datasets, tasks
from collection.models import Dataset, DatasetShard, DatasetVersion, VersionStatus
from collection.pipeline import apply, build_steps
from collection.pipeline.shards import run_sharded
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory
from tests.helpers import start_worker, stop_worker, wait_for

pytestmark = pytest.mark.django_db

STEPS = ["normalize", "dedup", "neardup", "pii", "quality", "downsample"]
NEAR = "please explain how the tides of the ocean depend on the moon and on the sun in detail"
NEAR_COPY = (
    "please explain how the tides of the ocean depend on the moon and on the sun in detail!!"
)
TOPICS = ["gardening", "chess openings", "bread baking", "sailing knots", "tax forms", "jazz"]


def _arena(many: int = 0) -> None:
    a, b = ModelFactory.create(name="model-one"), ModelFactory.create(name="model-two")
    battle_vote(a, b, "a", prompt=NEAR, text_a="the moon pulls the water", text_b="gravity")
    for n, topic in enumerate(TOPICS):
        battle_vote(a, b, "b", prompt=f"tell me about {topic}, write to me{n}@example.com")
    battle_vote(a, b, "tie", prompt="tell me about gardening, write to me0@example.com")
    battle_vote(a, b, "a", prompt=NEAR_COPY, text_a="tides follow the moon", text_b="and sun")
    battle_vote(a, None, "up", prompt="summarise the news of the day")
    for n in range(many):
        battle_vote(a, b, "a", prompt=f"question number {n}: what is {n} times {n + 1}?")


def _dataset(steps: list[str] = STEPS) -> Dataset:
    return Dataset.objects.create(name="sharded", sources=["battles", "direct"], steps=steps)


def _freeze(dataset: Dataset, shard_rows: int, capture: Any) -> DatasetVersion:
    with capture(execute=False):
        version = datasets.dataset_version_create(dataset=dataset, shard_rows=shard_rows)
    tasks.dataset_freeze(version.id)
    version.refresh_from_db()
    assert version.status == VersionStatus.DONE, version.error
    return version


def _counts(version: DatasetVersion) -> list[tuple[Any, ...]]:
    return [
        (s["name"], s["rows_in"], s["rows_out"], s["dropped"], s["changed"])
        for s in version.report["steps"]
    ]


def test_it_freezes_in_shards_with_the_rows_hash_and_counts_of_one_stream(
    django_capture_on_commit_callbacks: Any,
) -> None:
    _arena()
    dataset = _dataset()
    one = _freeze(dataset, 1000, django_capture_on_commit_callbacks)
    sharded = _freeze(dataset, 2, django_capture_on_commit_callbacks)

    assert DatasetShard.objects.filter(run__version=sharded, stage=1).count() == 5
    assert sharded.content_hash == one.content_hash
    assert sharded.content_hash == datasets.manifest_hash(sharded.manifest)  # one stream
    assert _counts(sharded) == _counts(one)
    assert sharded.row_count == one.row_count == 8 and sharded.rows_read == 10
    assert list(datasets.version_rows(version=sharded)) == list(datasets.version_rows(version=one))


def test_it_removes_a_near_copy_that_lies_in_another_shard(
    django_capture_on_commit_callbacks: Any,
) -> None:
    _arena()
    version = _freeze(_dataset(["neardup"]), 1, django_capture_on_commit_callbacks)

    shards = DatasetShard.objects.filter(run__version=version, stage=1).order_by("index")
    assert shards.count() == 10  # one row a shard: the two near-copies are shards 0 and 8
    neardup = version.report["steps"][0]
    assert neardup["dropped"] == {"near_duplicate": 2}  # and the repeated gardening prompt
    prompts = [r["messages"][0]["content"] for r in datasets.version_rows(version=version)]
    assert NEAR in prompts and NEAR_COPY not in prompts


def test_it_keeps_one_streams_output_for_any_shard_size_on_planted_rows() -> None:
    rows = []
    for n in range(120):
        base = f"row {n % 40} asks about topic {n % 40} with some more words to compare"
        text = base + (" again" if n % 3 == 0 else "")
        rows.append({"id": n, "messages": [{"role": "user", "content": text}]})
    params = {"downsample": {"cap": 2}}
    for names in (STEPS, ["downsample", "neardup", "dedup"], ["pii"]):
        kept, _ = apply(build_steps(names, params), rows)
        for size in (1, 7, 120):
            shards = [rows[i : i + size] for i in range(0, len(rows), size)]
            assert run_sharded(build_steps(names, params), names, shards) == kept


def test_it_shows_progress_per_stage_step_and_shard_to_staff(
    alice: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    _arena()
    with django_capture_on_commit_callbacks(execute=False):
        version = datasets.dataset_version_create(dataset=_dataset(), shard_rows=3)
    alice.is_superuser = True  # holds every curation permission
    alice.save()
    staff, contributor = Client(), Client()
    staff.force_login(alice)
    contributor.force_login(bob)
    page = staff.get(f"/datasets/v/{version.id}/").content.decode()
    assert 'hx-trigger="every 2s"' in page and "Waiting for a pipeline worker" in page

    from collection import shards

    shards.dataset_version_freeze(version_id=version.id, units=2)  # a worker part-way through

    panel = staff.get(f"/datasets/v/{version.id}/", HTTP_HX_REQUEST="true")
    text = panel.content.decode()
    assert panel.status_code == 200 and "<html" not in text and 'id="freeze-progress"' in text
    assert "10 rows read" in text and "2 / 4" in text  # stage 1: two of four shards done
    assert "normalize" in text and "dedup (keys)" in text
    assert text.count("<td>done</td>") == 2 and text.count("<td>pending</td>") == 2
    assert contributor.get(f"/datasets/v/{version.id}/", HTTP_HX_REQUEST="true").status_code in (
        302,
        403,
    )

    tasks.dataset_freeze(version.id)
    done = staff.get(f"/datasets/v/{version.id}/", HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"  # the frozen page replaces the panel
    assert "sha256" in staff.get(f"/datasets/v/{version.id}/").content.decode()


@pytest.mark.django_db(transaction=True)  # the worker reads committed rows
def test_it_resumes_after_a_killed_worker_without_redoing_finished_shards(
    redis_conn: Any,
) -> None:
    _arena(many=150)
    dataset = _dataset(["normalize", "dedup", "pii", "lang", "toxicity"])
    stage_one = DatasetShard.objects.filter(run__version__dataset=dataset, stage=1)
    worker, _ = start_worker(queues="pipeline", concurrency=1)
    try:
        version = datasets.dataset_version_create(dataset=dataset, shard_rows=1)
        wait_for(lambda: stage_one.filter(done=True).count() >= 3, timeout=60, interval=0.01)
    finally:
        worker.kill()  # no warm shutdown: the shard it holds is rolled back with its connection
        worker.wait()
        redis_conn.delete(datasets.PIPELINE_QUEUE)  # the freeze's copies no worker took
    finished = dict(stage_one.filter(done=True).values_list("index", "finished_at"))
    # Fewer than all when this worker is the only one; a worker the session started for other
    # tests (it serves every queue) may take shards too, and that is no different in kind.
    assert len(finished) >= 3 and stage_one.count() == 160

    def unlocked() -> bool:  # PostgreSQL has ended the killed worker's transaction
        with transaction.atomic():
            pending = DatasetShard.objects.filter(run__version=version, done=False)
            return pending.select_for_update(skip_locked=True).count() == pending.count()

    wait_for(unlocked, timeout=30)
    tasks.dataset_freeze(version.id)  # the task again, as the broker delivers it after a loss
    # (It returns when no shard is left to claim: one another worker holds finishes the freeze.)
    wait_for(lambda: DatasetVersion.objects.get(id=version.id).status == VersionStatus.DONE)

    version.refresh_from_db()
    assert version.status == VersionStatus.DONE and version.row_count == 159
    assert version.content_hash == datasets.manifest_hash(version.manifest)
    again = dict(stage_one.filter(index__in=finished).values_list("index", "finished_at"))
    assert again == finished  # the shards done before the kill were not run again
    assert set(
        DatasetShard.objects.filter(run__version=version).values_list("runs", flat=True)
    ) == {1}


def test_it_lets_staff_resume_an_interrupted_freeze(
    alice: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    _arena()
    with django_capture_on_commit_callbacks(execute=False):
        version = datasets.dataset_version_create(dataset=_dataset(), shard_rows=3)
    from collection import shards

    shards.dataset_version_freeze(version_id=version.id, units=3)  # then its worker stopped
    alice.is_superuser = True
    alice.save()
    staff, contributor = Client(), Client()
    staff.force_login(alice)
    contributor.force_login(bob)
    with django_capture_on_commit_callbacks(execute=False) as refused:
        assert contributor.post(f"/datasets/v/{version.id}/resume/").status_code == 302  # login
    assert not refused
    assert "Resume the freeze" in staff.get(f"/datasets/v/{version.id}/").content.decode()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(f"/datasets/v/{version.id}/resume/")

    assert response["Location"] == f"/datasets/v/{version.id}/"
    assert len(callbacks) == 1  # the freeze task, sent to the pipeline workers on commit
    tasks.dataset_freeze(version.id)  # what that worker runs
    version.refresh_from_db()
    assert version.status == VersionStatus.DONE
    assert version.content_hash == datasets.manifest_hash(version.manifest)
    runs = DatasetShard.objects.filter(run__version=version).values_list("runs", flat=True)
    assert set(runs) == {1}


@pytest.mark.django_db(transaction=True)  # the workers read committed rows
def test_it_freezes_with_several_workers_taking_shards_at_once() -> None:
    _arena(many=40)
    dataset = _dataset(["normalize", "dedup", "neardup", "pii", "downsample", "quality"])
    workers = [start_worker(queues="pipeline", concurrency=2)[0] for _ in range(2)]
    try:
        version = datasets.dataset_version_create(dataset=dataset, shard_rows=3)
        wait_for(
            lambda: DatasetVersion.objects.get(id=version.id).status == VersionStatus.DONE,
            timeout=120,
        )
    finally:
        for worker in workers:
            stop_worker(worker)
    version.refresh_from_db()
    assert version.content_hash == datasets.manifest_hash(version.manifest)
    assert version.rows_read == 50 and version.row_count == 48  # the copy and the near-copy
    shards = DatasetShard.objects.filter(run__version=version)
    # 17 shards in five stages: the sources, then normalize + dedup's keys, near-dedup's keys,
    # pii + down-sampling's keys, quality.
    assert shards.count() == 17 * 5 and set(shards.values_list("runs", flat=True)) == {1}
