"""Fine-tuning jobs end to end on CPU with zoo models: SFT and DPO (full and LoRA), outputs in
Hugging Face format with a model card, resumption after a killed worker, cancel and resume, and
bad launches refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from transformers import AutoModelForCausalLM, AutoTokenizer

from collection.models import DatasetVersion, FinetuneJob, JobState
from collection.training import services
from collection.training.tasks import finetune_run
from modelhub.models import Model
from tests.training.conftest import BASE, JUDGE

pytestmark = pytest.mark.django_db

FAST = {"max_steps": 4, "save_steps": 2, "batch_size": 2, "test_fraction": 0.25, "judge_prompts": 2}


def _launch(
    version: DatasetVersion,
    base: Model,
    capture: Any,
    method: str = "sft",
    **hyperparameters: Any,
) -> FinetuneJob:
    with capture(execute=False) as callbacks:
        job = services.job_create(
            version=version,
            method=method,
            base_model=base,
            hyperparameters={**FAST, **hyperparameters},
            seed=7,
        )
    assert len(callbacks) == 1  # its run, sent to the train queue once committed
    return job


def test_it_trains_an_sft_job_and_writes_the_model_its_tokenizer_log_and_card(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    job = _launch(version, hub[BASE], django_capture_on_commit_callbacks)

    finetune_run(job.id)

    job.refresh_from_db()
    assert job.state == JobState.DONE, job.error
    assert job.step == 4 and [step for step, _ in job.loss_history] == [1, 2, 3, 4]
    assert job.tokens_per_second and job.tokens_per_second > 0
    out = Path(job.output_dir) / "model"
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    AutoModelForCausalLM.from_pretrained(out)
    card = (out / "README.md").read_text()
    assert version.content_hash in card and f'base_model: "{BASE}"' in card
    for name, value in job.hyperparameters.items():
        assert f"| {name} | {json.dumps(value)} |" in card
    log = [json.loads(line) for line in (Path(job.output_dir) / "training_log.jsonl").open()]
    assert [entry["step"] for entry in log if "loss" in entry] == [1, 2, 3, 4]
    assert job.metrics["heldout_loss_before"] > 0 and job.metrics["heldout_loss_after"] > 0


def test_it_resumes_a_killed_lora_dpo_job_from_its_last_checkpoint(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    job = _launch(version, hub[BASE], django_capture_on_commit_callbacks, "dpo", lora=True)

    services.job_run(job_id=job.id, stop_at_step=2)  # the worker dies after step 2's checkpoint
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.step == 2
    assert services.job_is_orphaned(job)  # no process holds its run lock
    assert (Path(job.output_dir) / "checkpoints" / "checkpoint-2").is_dir()
    assert not (Path(job.output_dir) / "model").exists()

    finetune_run(job.id)  # the broker delivers the task again (acks_late): the next worker

    job.refresh_from_db()
    assert job.state == JobState.DONE, job.error
    assert job.resumed_from_step == 2 and job.step == 4
    assert [step for step, _ in job.loss_history] == [1, 2, 3, 4]
    assert (Path(job.output_dir) / "adapter" / "adapter_config.json").exists()
    assert (Path(job.output_dir) / "model" / "config.json").exists()


def test_it_cancels_a_running_job_and_resumes_it_from_its_checkpoint(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    job = _launch(version, hub[BASE], django_capture_on_commit_callbacks)
    services.job_run(job_id=job.id, stop_at_step=2)
    services.job_cancel(job_id=job.id)

    finetune_run(job.id)  # the running task sees the cancel at its next logged step
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.step < 4

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.job_resume(job_id=job.id)
    assert len(callbacks) == 1
    finetune_run(job.id)
    job.refresh_from_db()
    assert job.state == JobState.DONE and job.resumed_from_step is not None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"method": "kto"}, "Choose a method"),
        ({"hyperparameters": {"learning_rat": 1e-4}}, "unknown hyperparameter learning_rat"),
        ({"hyperparameters": {"max_steps": 0}}, "max_steps must lie between"),
        ({"base_model": None, "base_path": "/nonexistent"}, "not a Hugging Face model directory"),
    ],
)
def test_it_refuses_a_bad_launch_and_stores_nothing(
    version: DatasetVersion, hub: dict[str, Model], fields: dict[str, Any], message: str
) -> None:
    launch: dict[str, Any] = {"version": version, "method": "sft", "base_model": hub[BASE]}
    with pytest.raises(services.JobError, match=message):
        services.job_create(**(launch | fields))
    assert not FinetuneJob.objects.exists()


def test_it_gates_with_a_judge_in_both_orders_storing_every_verdict(
    version: DatasetVersion,
    hub: dict[str, Model],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.FINETUNE_PROMOTE_WIN_RATE = 0.5  # promoted without staff from half the verdicts
    with django_capture_on_commit_callbacks(execute=False):
        job = services.job_create(
            version=version,
            method="sft",
            base_model=hub[BASE],
            judge_model=hub[JUDGE],
            hyperparameters=FAST,
        )
    finetune_run(job.id)

    job.refresh_from_db()
    rate = job.metrics["judge_win_rate"]
    assert job.state == (JobState.PROMOTED if rate >= 0.5 else JobState.DONE), job.error
    assert (job.promoted_model is not None) == (rate >= 0.5)
    verdicts = list(job.verdicts.all())
    prompts = min(FAST["judge_prompts"], job.metrics["heldout_records"])
    assert len(verdicts) == 2 * prompts
    assert sorted(v.first for v in verdicts) == ["base"] * prompts + ["new"] * prompts
    assert all(v.verdict in ("a", "b", "tie") and abs(v.p_a + v.p_b - 1) < 1e-4 for v in verdicts)
    assert 0.0 <= job.metrics["judge_win_rate"] <= 1.0


def test_it_leaves_a_job_that_another_process_trains_alone(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    job = _launch(version, hub[BASE], django_capture_on_commit_callbacks)
    other = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [services.RUN_LOCK, job.id])

        finetune_run(job.id)  # a second delivery while the first still trains

        job.refresh_from_db()
        assert job.state == JobState.QUEUED and job.step == 0
        assert services.job_is_training(job_id=job.id)
        FinetuneJob.objects.filter(id=job.id).update(state=JobState.RUNNING)
        job.refresh_from_db()
        with pytest.raises(services.JobError, match="whose worker died"):
            services.job_resume(job_id=job.id)  # it is alive: nothing to resume
    finally:
        other.close()
