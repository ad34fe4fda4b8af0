"""Freezing a dataset version in shards that the pipeline workers process in parallel.

The freeze reads the sources once into shards of ``DatasetRun.shard_rows`` rows (stage 0), then
works through the stages of ``collection.pipeline.shards.plan``. Every freeze task, the first and
the copies it enqueues, runs the same loop: claim a pending shard of the current stage (a row lock
taken with SKIP LOCKED, so two workers never take the same one), run it and store its result in
the same transaction; when no shard of the stage is left, the worker that finds the stage complete
runs the global pass (dedup, near-dedup, down-sampling decisions over every shard's keys) and opens
the next stage. A worker host added is throughput added: it takes shards from the same queue.

A killed worker's transaction rolls back, so its shard is pending again; a re-run of the freeze
(the task is acks_late: the broker delivers it again) skips every shard already done. The last
stage's shards, in order, are the version's rows: the same rows, hash and counts as one stream.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from collection import datasets
from collection.models import (
    DatasetRow,
    DatasetRun,
    DatasetShard,
    DatasetVersion,
    VersionStatus,
)
from collection.pipeline import Step, build_steps
from collection.pipeline.shards import Stage, decide, merge_stats, plan, run_stage

log = logging.getLogger(__name__)

# At most this many copies of the freeze task are enqueued for one stage (each takes a worker slot
# while there are shards to claim, and ends when there are none).
MAX_PARALLEL = 32


def freeze_enqueue(*, version_id: int, copies: int = 1) -> None:
    for _ in range(max(1, copies)):
        current_app.send_task(
            datasets.FREEZE_TASK, args=(version_id,), queue=datasets.PIPELINE_QUEUE
        )


def _steps(version: DatasetVersion) -> list[Step]:
    return build_steps(version.manifest["steps"], version.manifest.get("params") or {})


def dataset_version_freeze(*, version_id: int, units: int | None = None) -> DatasetVersion | None:
    """Work on a version's freeze until no shard is left to claim (or after ``units`` shards and
    global passes); the worker that completes the last stage stores the rows, report, hash and
    datasheet. Idempotent: a frozen version is left alone, a failed or interrupted one goes on
    from the shards already done."""
    with transaction.atomic():
        version = DatasetVersion.objects.select_for_update().filter(id=version_id).first()
        if version is None or version.status == VersionStatus.DONE:
            return version
        if version.status != VersionStatus.RUNNING:
            version.status = VersionStatus.RUNNING
            version.error = ""
            version.save(update_fields=["status", "error"])
    try:
        _read_sources(version)
        done = 0
        while (units is None or done < units) and (_work_one(version) or _advance(version)):
            done += 1
    except Exception as error:
        DatasetVersion.objects.filter(id=version.id).exclude(status=VersionStatus.DONE).update(
            status=VersionStatus.FAILED, error=f"{type(error).__name__}: {error}"
        )
        raise
    version.refresh_from_db()
    return version


def _read_sources(version: DatasetVersion) -> None:
    """Stage 0: the manifest's source rows, in order, cut into shards (once)."""
    known = DatasetRun.objects.filter(version=version).first()
    if known is not None and known.stage > 0:
        return
    with transaction.atomic():
        # A version made before freezes had runs gets one. Locks: the run, never the version
        # first (the last stage's worker locks the run, then the version).
        DatasetRun.objects.bulk_create(
            [DatasetRun(version=version, shard_rows=datasets.SHARD_ROWS)], ignore_conflicts=True
        )
        run = DatasetRun.objects.select_for_update().get(version=version)
        if run.stage > 0:
            return
        manifest = version.manifest
        rows = datasets.source_rows(
            sources=manifest["sources"], until=datetime.fromisoformat(manifest["until"])
        )
        count = 0
        for index, chunk in enumerate(_chunks(rows, run.shard_rows)):
            if index and not chunk:
                break
            DatasetShard.objects.create(
                run=run, stage=0, index=index, done=True, runs=1, rows=chunk,
                rows_in=len(chunk), rows_out=len(chunk), finished_at=timezone.now(),
            )  # fmt: skip
            count = index + 1
        run.shard_count = count
        run.stages = [stage.as_dict() for stage in plan(manifest["steps"])]
        _open_stage(run, 1)


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Lists of ``size`` rows; at least one list, empty when there are no rows."""
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    yield chunk


def _open_stage(run: DatasetRun, stage: int) -> None:
    """Make the stage's shards pending and wake workers for them (after commit)."""
    run.stage = stage
    run.save(update_fields=["stage", "shard_count", "stages", "updated_at"])
    DatasetShard.objects.bulk_create(
        [DatasetShard(run=run, stage=stage, index=i) for i in range(run.shard_count)],
        ignore_conflicts=True,
    )
    copies = min(run.shard_count - 1, MAX_PARALLEL)
    if copies > 0:
        version_id = run.version_id
        transaction.on_commit(lambda: freeze_enqueue(version_id=version_id, copies=copies))


def _work_one(version: DatasetVersion) -> bool:
    """Claim one pending shard of the current stage, run it and store its result. False when
    there is none to claim (all done, or the rest taken by other workers)."""
    with transaction.atomic():
        run = DatasetRun.objects.get(version=version)
        shard = (
            DatasetShard.objects.select_for_update(skip_locked=True)
            .filter(run=run, stage=run.stage, done=False)
            .order_by("index")
            .first()
        )
        if shard is None:
            return False
        source = DatasetShard.objects.get(run=run, stage=run.stage - 1, index=shard.index)
        stage = Stage.from_dict(run.stages[run.stage - 1])
        result = run_stage(stage, _steps(version), source.rows, source.drops)
        shard.rows, shard.keys, shard.stats = result.rows, result.keys, result.stats
        shard.rows_in, shard.rows_out = len(source.rows), len(result.rows)
        shard.done, shard.runs, shard.finished_at = True, shard.runs + 1, timezone.now()
        shard.save()
        # What the previous stage held is no longer needed once this shard has read it.
        DatasetShard.objects.filter(id=source.id).update(rows=[], keys=None)
    return True


def _advance(version: DatasetVersion) -> bool:
    """When every shard of the current stage is done: run its global pass and open the next
    stage (True), or store the version's rows when it was the last (False). False too when some
    shard of the stage is still pending or taken by another worker."""
    with transaction.atomic():
        run = DatasetRun.objects.select_for_update().get(version=version)
        shards = DatasetShard.objects.filter(run=run, stage=run.stage)
        if shards.filter(done=False).exists():
            return False
        if run.stage == len(run.stages):
            _finish(run)
            return False
        stage = Stage.from_dict(run.stages[run.stage - 1])
        if stage.barrier is not None:
            step = _steps(version)[stage.barrier]
            ordered = shards.order_by("index")

            def shard_keys() -> Iterator[list[Any]]:
                for keys in ordered.values_list("keys", flat=True).iterator(chunk_size=1):
                    yield keys or []

            for index, drops in enumerate(decide(step, shard_keys)):
                if drops:
                    shards.filter(index=index).update(drops=drops)
            shards.update(keys=None)
        _open_stage(run, run.stage + 1)
    return True


def _finish(run: DatasetRun) -> None:
    """The last stage's rows, shard after shard, become the version's rows; hash, counts,
    datasheet."""
    version = DatasetVersion.objects.select_for_update().get(id=run.version_id)
    if version.status == VersionStatus.DONE:
        return
    DatasetRow.objects.filter(version=version).delete()
    hasher = datasets.ContentHasher()
    languages: Counter[str] = Counter()
    count = 0
    last = DatasetShard.objects.filter(run=run, stage=run.stage).order_by("index")
    for rows in last.values_list("rows", flat=True).iterator(chunk_size=1):
        for row in rows:
            hasher.add(row)
            languages[str(row.get("lang") or row.get("language") or "unknown")] += 1
        DatasetRow.objects.bulk_create(
            (
                DatasetRow(
                    version=version,
                    position=count + i,
                    source_key=datasets.source_key(row),
                    data=row,
                )
                for i, row in enumerate(rows)
            ),
            batch_size=datasets.BATCH,
        )
        count += len(rows)
    every = DatasetShard.objects.filter(run=run, stage__gt=0).order_by("stage", "index")
    steps = merge_stats(_steps(version), every.values_list("stats", flat=True).iterator())
    version.report = {"steps": steps, "languages": dict(languages.most_common())}
    sources = DatasetShard.objects.filter(run=run, stage=0)
    version.rows_read = sum(sources.values_list("rows_in", flat=True))
    version.row_count = count
    version.content_hash = hasher.hexdigest()
    version.datasheet = datasets.datasheet(version)
    version.status = VersionStatus.DONE
    version.error = ""
    version.frozen_at = timezone.now()
    version.save()
    last.update(rows=[])


# -- selectors --------------------------------------------------------------------------------


def run_progress(*, version: DatasetVersion) -> dict[str, Any] | None:
    """Per stage: its steps, shards done of all and rows in/out so far; per shard of the current
    stage: done or not and its rows out; per step: the counts of the shards done so far."""
    run = DatasetRun.objects.filter(version=version).first()
    if run is None or run.stage == 0:
        return None
    names = version.manifest["steps"]
    shards = list(
        DatasetShard.objects.filter(run=run)
        .order_by("stage", "index")
        .values("stage", "index", "done", "rows_in", "rows_out", "stats", "runs")
    )
    stages = []
    for number, data in enumerate(run.stages, start=1):
        stage = Stage.from_dict(data)
        mine = [s for s in shards if s["stage"] == number]
        labels = [names[i] for i in stage.steps]
        if stage.applies is not None:
            labels.insert(0, f"{names[stage.applies]} (apply)")
        if stage.barrier is not None:
            labels.append(f"{names[stage.barrier]} (keys)")
        stages.append(
            {
                "number": number,
                "steps": labels or ["(write rows)"],
                "done": sum(s["done"] for s in mine),
                "total": run.shard_count,
                "rows_in": sum(s["rows_in"] for s in mine if s["done"]),
                "rows_out": sum(s["rows_out"] for s in mine if s["done"]),
                "current": number == run.stage,
            }
        )
    steps = merge_stats(
        _steps(version), (s["stats"] for s in shards if s["stage"] > 0 and s["done"])
    )
    current = [s for s in shards if s["stage"] == run.stage]
    return {
        "stage": run.stage,
        "stages": stages,
        "steps": steps,
        "shards": current,
        "read": sum(s["rows_in"] for s in shards if s["stage"] == 0),
    }
