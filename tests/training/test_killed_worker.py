"""A fine-tuning job on a real train worker (the Procfile's prefork pool of one) survives being
killed: when its training process dies, the broker hands the task back and the next process resumes
from the last checkpoint; when the whole worker dies, the beat's sweep queues the job again for the
next worker."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from collection.models import DatasetVersion, FinetuneJob, JobState
from collection.training import services
from collection.training.tasks import finetune_resume_orphans
from modelhub.models import Model
from tests.helpers import start_worker, stop_worker, wait_for
from tests.training.conftest import BASE
from worker.celery import app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.EVALUATING)
SAVE_STEPS = 25
MAX_STEPS = 500


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _job(job_id: int) -> FinetuneJob:
    return FinetuneJob.objects.get(id=job_id)


def _orphaned(job_id: int) -> FinetuneJob | None:
    job = _job(job_id)
    return job if services.job_is_orphaned(job) else None


def _ended(job_id: int) -> FinetuneJob | None:
    job = _job(job_id)
    return job if job.state not in ACTIVE else None


def _checkpoints(job: FinetuneJob) -> list[int]:
    folder = Path(job.output_dir) / "checkpoints"
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*"))


def _past_a_checkpoint(job_id: int, after: int) -> FinetuneJob | None:
    """The job once it trains beyond a checkpoint saved after step ``after``."""
    job = _job(job_id)
    saved = [step for step in _checkpoints(job) if step > after] if job.output_dir else []
    return job if saved and job.step > saved[-1] and job.state == JobState.RUNNING else None


def test_a_job_resumes_from_its_checkpoint_after_its_process_and_then_its_worker_are_killed(
    version: DatasetVersion, hub: dict[str, Model], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setenv("LUDUS_MODELS_DIR", str(settings.MODELS_DIR))
    monkeypatch.setenv("LUDUS_DATA_DIR", str(settings.DATA_DIR))
    worker, _ = start_worker(queues="train", concurrency=1, pool="prefork")
    workers: list[subprocess.Popen[bytes]] = [worker]
    try:
        job = services.job_create(
            version=version,
            method="sft",
            base_model=hub[BASE],
            hyperparameters={"max_steps": MAX_STEPS, "save_steps": SAVE_STEPS, "batch_size": 2},
            seed=7,
        )  # committed: its task is on the train queue

        # 1. The training process dies (the kernel's out-of-memory killer, say).
        running = wait_for(lambda: _past_a_checkpoint(job.id, after=0), timeout=120, interval=0.2)
        (process,) = _children(worker.pid)
        os.kill(process, signal.SIGKILL)
        first = wait_for(lambda: _job(job.id).resumed_from_step, timeout=60, interval=0.2)
        assert first % SAVE_STEPS == 0 and running.step > first >= SAVE_STEPS
        assert _children(worker.pid) != [process]  # the pool started a new process

        # 2. The whole worker dies with the job running (its host went down): nothing trains it
        # and the broker keeps its task for an hour; the beat's sweep queues it again.
        wait_for(lambda: _past_a_checkpoint(job.id, after=first), timeout=120, interval=0.2)
        # The worker first, so it cannot hand the task back when its process dies.
        for pid in [worker.pid, *_children(worker.pid)]:
            os.kill(pid, signal.SIGKILL)
        worker.wait(10)
        orphan = wait_for(lambda: _orphaned(job.id), timeout=10)
        assert orphan.state == JobState.RUNNING and orphan.step < MAX_STEPS
        sweep = app.conf.beat_schedule["resume-orphaned-finetunes"]
        assert sweep["task"] == finetune_resume_orphans.name and sweep["schedule"] <= 60
        assert sweep["options"]["queue"] == "default"  # not behind a training job
        assert finetune_resume_orphans() == [job.id]
        assert _job(job.id).state == JobState.QUEUED
        assert finetune_resume_orphans() == []  # queued, not orphaned: swept once

        workers.append(start_worker(queues="train", concurrency=1, pool="prefork")[0])
        done = wait_for(lambda: _ended(job.id), timeout=180, interval=0.5)
        assert done.state == JobState.DONE, done.error
        assert done.step == MAX_STEPS and done.resumed_from_step > first  # type: ignore[operator]
        # The logged losses run from step 1 to the last without a gap or a repeat.
        assert [step for step, _ in done.loss_history] == list(range(1, MAX_STEPS + 1))
        assert (Path(done.output_dir) / "model" / "config.json").exists()
    finally:
        for proc in workers:
            if proc.poll() is None:
                stop_worker(proc)
