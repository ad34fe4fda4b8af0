"""Fine-tuning jobs: launching, running (on the ``train`` queue), cancelling, resuming,
evaluating and promoting. The only code that writes FinetuneJob and JudgeVerdict rows.

A job's state moves queued -> running -> evaluating -> done -> promoted; cancelling -> cancelled
and failed are the other ends; resume puts a cancelled or failed job back in the queue, and the
run goes on from its last checkpoint. A worker killed mid-run leaves the job running: the task is
acknowledged late, so the broker hands it to the next worker, which resumes the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from collection.datasets import version_rows
from collection.models import (
    DatasetVersion,
    FinetuneJob,
    JobState,
    JudgeVerdict,
    TrainMethod,
    VersionStatus,
)
from collection.training import data, hyper
from modelhub.models import Engine, Model
from modelhub.zoo import tooluse

TRAIN_QUEUE = "train"
TRAIN_TASK = "collection.training.tasks.finetune_run"
RUN_LOCK = 0x7472  # the advisory-lock namespace of job runs ("tr")
RUN_LOCK_WAIT_S = 5.0
ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.EVALUATING, JobState.CANCELLING)


class JobError(Exception):
    """A request on a job that cannot be honoured as asked (the message is shown to staff)."""


# -- paths ------------------------------------------------------------------------------------


def base_dir(job: FinetuneJob) -> Path:
    return job.base_model.files() if job.base_model else Path(job.base_path)


def base_label(job: FinetuneJob) -> str:
    return job.base_model.name if job.base_model else job.base_path


def job_dir(job_id: int) -> Path:
    return Path(settings.DATA_DIR) / "training" / f"job-{job_id}"


# -- launching --------------------------------------------------------------------------------


def _local_dir(model: Model, role: str) -> Path:
    # Ludus serves these engines' models from directories of its own (vLLM from the same files).
    if model.engine not in (Engine.LOCAL, Engine.VLLM) or model.lora_base_id is not None:
        raise JobError(f"The {role} must be a model with local files; {model.name} is not.")
    path = model.files()
    if not (path / "config.json").exists():
        raise JobError(f"The {role} {model.name} has no Hugging Face files at {path}.")
    return path


def job_create(
    *,
    version: DatasetVersion,
    method: str,
    base_model: Model | None = None,
    base_path: str = "",
    judge_model: Model | None = None,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
    user: Any = None,
) -> FinetuneJob:
    """A queued job, checked before anything is stored; its run is sent to the train queue."""
    if method not in TrainMethod.values:
        raise JobError(f"Choose a method among {', '.join(TrainMethod.values)}.")
    if version.status != VersionStatus.DONE:
        raise JobError(f"{version} is not frozen.")
    if (base_model is None) == (not base_path):
        raise JobError("Name the base: a hub model or a local Hugging Face directory.")
    if base_model is not None:
        _local_dir(base_model, "base model")
    elif not (Path(base_path) / "config.json").exists():
        raise JobError(f"{base_path} is not a Hugging Face model directory.")
    if judge_model is not None:
        _local_dir(judge_model, "judge")
    try:
        values = hyper.resolve(hyperparameters)
    except hyper.HyperparameterError as error:
        raise JobError(str(error)) from None
    train, _ = data.split(version_rows(version=version), values["test_fraction"])
    if not data.records(method, train):
        raise JobError(f"{version} has no {method.upper()} records to train on.")
    with transaction.atomic():
        job = FinetuneJob.objects.create(
            version=version,
            method=method,
            base_model=base_model,
            base_path=base_path if base_model is None else "",
            judge_model=judge_model,
            hyperparameters=values,
            seed=seed,
            max_steps=values["max_steps"],
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        job.output_dir = str(job_dir(job.id))
        job.save(update_fields=["output_dir"])
        _enqueue(job.id)
    return job


def _enqueue(job_id: int) -> None:
    # By the task's name: the task calls these services, the services import no task.
    transaction.on_commit(
        lambda: current_app.send_task(TRAIN_TASK, args=(job_id,), queue=TRAIN_QUEUE)
    )


def job_cancel(*, job_id: int) -> FinetuneJob:
    """A queued job is cancelled at once; a running one stops at its next logged step (after a
    checkpoint, so a resume goes on from there)."""
    with transaction.atomic():
        job = FinetuneJob.objects.select_for_update().get(id=job_id)
        if job.state == JobState.QUEUED:
            job.state = JobState.CANCELLED
            job.finished_at = timezone.now()
        elif job.state in (JobState.RUNNING, JobState.EVALUATING):
            job.state = JobState.CANCELLING
        else:
            raise JobError(f"A {job.get_state_display().lower()} job cannot be cancelled.")
        job.save(update_fields=["state", "finished_at"])
    return job


def job_is_training(*, job_id: int) -> bool:
    """Whether a live process holds the job's run lock (a dead one's lock went with it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 2 AND granted)",
            [RUN_LOCK, job_id],
        )
        return bool(cursor.fetchone()[0])


def job_is_orphaned(job: FinetuneJob) -> bool:
    """A job left running or evaluating by a worker that died: no process trains it. The broker
    gives its task back after the visibility timeout; staff may resume it sooner."""
    return job.state in (JobState.RUNNING, JobState.EVALUATING) and not job_is_training(
        job_id=job.id
    )


def job_resume(*, job_id: int) -> FinetuneJob:
    """Put a cancelled, failed or orphaned job back in the queue; it goes on from its last
    checkpoint."""
    with transaction.atomic():
        job = FinetuneJob.objects.select_for_update().get(id=job_id)
        if job.state not in (JobState.CANCELLED, JobState.FAILED) and not job_is_orphaned(job):
            raise JobError(
                "Only a cancelled or failed job, or one whose worker died, can be resumed."
            )
        job.state = JobState.QUEUED
        job.error = ""
        job.finished_at = None
        job.save(update_fields=["state", "error", "finished_at"])
        _enqueue(job.id)
    return job


# -- running ----------------------------------------------------------------------------------


def _claim(job_id: int) -> FinetuneJob | None:
    """The job, now running, or None when there is nothing to run (gone, cancelled, finished)."""
    with transaction.atomic():
        job = (
            FinetuneJob.objects.select_for_update(of=("self",))
            .select_related("version", "version__dataset", "base_model", "judge_model")
            .filter(id=job_id)
            .first()
        )
        if job is None:
            return None
        if job.state == JobState.CANCELLING:
            job.state = JobState.CANCELLED
            job.finished_at = timezone.now()
            job.save(update_fields=["state", "finished_at"])
            return None
        if job.state not in (JobState.QUEUED, JobState.RUNNING, JobState.EVALUATING):
            return None
        job.state = JobState.RUNNING
        job.started_at = job.started_at or timezone.now()
        job.save(update_fields=["state", "started_at"])
    return job


def _records(job: FinetuneJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hp = job.hyperparameters
    train, test = data.split(version_rows(version=job.version), hp["test_fraction"])
    return data.records(job.method, train), data.records(job.method, test)


def job_run(*, job_id: int, stop_at_step: int | None = None) -> FinetuneJob | None:
    """Train the job (from its last checkpoint, if any), then evaluate it. ``stop_at_step`` stops
    after that step's checkpoint and leaves the job running, as a killed worker would."""
    with _run_lock(job_id) as held:
        if not held:  # another process trains it now (a second delivery, a `finetune run`)
            return FinetuneJob.objects.filter(id=job_id).first()
        return _run(job_id, stop_at_step)


@contextlib.contextmanager
def _run_lock(job_id: int) -> Iterator[bool]:
    """A PostgreSQL session lock on the job while a process trains it: released when the run ends
    or when its process dies (its connection closes), so a redelivered task can take over. A task
    handed back the moment its process was killed may arrive before the server has noticed the
    dead connection, so it waits a few seconds for the lock before leaving the job alone."""
    deadline = time.monotonic() + RUN_LOCK_WAIT_S
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK, job_id])
            held = bool(cursor.fetchone()[0])
        if held or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK, job_id])


def _run(job_id: int, stop_at_step: int | None) -> FinetuneJob | None:
    from collection.training import runner

    job = _claim(job_id)
    if job is None:
        return FinetuneJob.objects.filter(id=job_id).first()
    hp = job.hyperparameters
    out = Path(job.output_dir or job_dir(job.id))
    try:
        train, test = _records(job)
        if "heldout_loss_before" not in job.metrics:
            before = _heldout(base_dir(job), job.method, test, hp["max_length"])
            FinetuneJob.objects.filter(id=job.id).update(
                metrics={**job.metrics, "heldout_loss_before": before}
            )
            job.metrics["heldout_loss_before"] = before

        def on_progress(progress: runner.Progress) -> bool:
            return _progress(job.id, progress)

        # Shown on the job's page while it trains on from there.
        if (checkpoint := runner.last_checkpoint(out)) is not None:
            FinetuneJob.objects.filter(id=job.id).update(
                resumed_from_step=runner.checkpoint_step(checkpoint)
            )
        outcome = runner.train(
            method=job.method,
            base_dir=base_dir(job),
            out_dir=out,
            records=train,
            hyperparameters=hp,
            seed=job.seed,
            on_progress=on_progress,
            stop_at_step=stop_at_step,
        )
        if not outcome.finished:
            return _stopped(job.id)
        FinetuneJob.objects.filter(id=job.id).update(
            state=JobState.EVALUATING, step=outcome.step, eta_seconds=0
        )
        metrics = {**job.metrics, **outcome.metrics}
        metrics.update(_evaluate(job, out / "model", test))
        (out / "model" / "README.md").write_text(card(job, metrics))
        with transaction.atomic():
            current = FinetuneJob.objects.select_for_update().get(id=job.id)
            current.metrics = metrics
            current.state = (
                JobState.CANCELLED if current.state == JobState.CANCELLING else JobState.DONE
            )
            current.finished_at = timezone.now()
            current.save(update_fields=["metrics", "state", "finished_at"])
        # Promoted without staff when the judge's win rate reaches the configured threshold.
        threshold = settings.FINETUNE_PROMOTE_WIN_RATE
        rate = metrics.get("judge_win_rate")
        if (
            current.state == JobState.DONE
            and threshold > 0
            and rate is not None
            and rate >= threshold
        ):
            return job_promote(job_id=job.id)
        return current
    except Exception as error:
        FinetuneJob.objects.filter(id=job.id).update(
            state=JobState.FAILED,
            error=f"{type(error).__name__}: {error}",
            finished_at=timezone.now(),
        )
        raise


def _progress(job_id: int, progress: Any) -> bool:
    """Record one logged step; True when the job is being cancelled (the trainer stops)."""
    with transaction.atomic():
        job = FinetuneJob.objects.select_for_update().get(id=job_id)
        if progress.loss is not None and math.isfinite(progress.loss):
            job.loss_history = [
                *[p for p in job.loss_history if p[0] < progress.step],
                [progress.step, round(progress.loss, 5)],
            ]
        job.step = progress.step
        job.max_steps = progress.max_steps
        job.tokens_per_second = progress.tokens_per_second
        job.eta_seconds = progress.eta_seconds
        job.save(
            update_fields=["loss_history", "step", "max_steps", "tokens_per_second", "eta_seconds"]
        )
        return job.state == JobState.CANCELLING


def _stopped(job_id: int) -> FinetuneJob:
    with transaction.atomic():
        job = FinetuneJob.objects.select_for_update().get(id=job_id)
        if job.state == JobState.CANCELLING:
            job.state = JobState.CANCELLED
            job.finished_at = timezone.now()
            job.save(update_fields=["state", "finished_at"])
    return job


def _heldout(model_path: Path, method: str, test: list[dict[str, Any]], max_length: int) -> Any:
    from collection.training import evaluation

    conversations = [data.conversation(method, record) for record in test]
    loss = evaluation.heldout_loss(model_path, conversations, max_length)
    return None if math.isnan(loss) else round(loss, 5)


def _evaluate(job: FinetuneJob, trained: Path, test: list[dict[str, Any]]) -> dict[str, Any]:
    """The gate: held-out loss after training and, with a judge, verdicts in both orders."""
    from collection.training import evaluation

    hp = job.hyperparameters
    metrics: dict[str, Any] = {
        "heldout_loss_after": _heldout(trained, job.method, test, hp["max_length"]),
        "heldout_records": len(test),
    }
    metrics.update(_function_calling(job, trained))
    prompts = [data.prompt(job.method, record) for record in test][: hp["judge_prompts"]]
    if job.judge_model is None or not prompts:
        return metrics
    new = evaluation.replies(trained, prompts, hp["max_new_tokens"])
    base = evaluation.replies(base_dir(job), prompts, hp["max_new_tokens"])
    questions = [p[-1]["content"] if p else "" for p in prompts]
    verdicts = evaluation.judge(job.judge_model.files(), questions, new, base)
    with transaction.atomic():
        JudgeVerdict.objects.filter(job=job).delete()
        JudgeVerdict.objects.bulk_create(
            JudgeVerdict(
                job=job,
                prompt=v.question,
                first=v.first,
                reply_a=v.reply_a,
                reply_b=v.reply_b,
                verdict=v.verdict,
                p_a=v.p_a,
                p_b=v.p_b,
            )
            for v in verdicts
        )
    metrics["judge_model"] = job.judge_model.name
    metrics["judge_verdicts"] = len(verdicts)
    metrics["judge_win_rate"] = evaluation.win_rate(v.winner for v in verdicts)
    return metrics


def _function_calling(job: FinetuneJob, trained: Path) -> dict[str, Any]:
    """The gate's function-calling check, run on the new model and its base alike when the base
    is a hub model with tools enabled; otherwise the reason it was skipped."""
    from collection.training import evaluation

    base = job.base_model
    limit = job.hyperparameters.get("function_calling_cases", 0)
    cases_path = Path(settings.MODELS_DIR) / tooluse.TEST_SET
    if base is None or not base.tools:
        reason = "the base model has no tools enabled, so there is no call to check"
    elif not limit:
        reason = "function_calling_cases is 0"
    elif not cases_path.exists():
        reason = f"no function-calling test set at {cases_path} (the zoo build writes it)"
    else:
        cases = tooluse.read_cases(cases_path)[:limit]
        new = promoted_name(job)
        scores = evaluation.function_calling({base.name: base_dir(job), new: trained}, cases)
        return {
            "function_calling": {
                "cases": scores[new]["cases"],
                "base": scores[base.name]["accuracy"],
                "new": scores[new]["accuracy"],
                "base_by_category": scores[base.name]["by_category"],
                "new_by_category": scores[new]["by_category"],
            }
        }
    return {"function_calling_skipped": reason}


def card(job: FinetuneJob, metrics: dict[str, Any]) -> str:
    from collection.training.runner import model_card

    return model_card(
        model_name=promoted_name(job),
        base=base_label(job),
        method=job.method,
        dataset=f"{job.version} (version id {job.version_id})",
        dataset_hash=job.version.content_hash,
        hyperparameters=job.hyperparameters,
        seed=job.seed,
        metrics=metrics,
    )


# -- promotion --------------------------------------------------------------------------------


def promoted_name(job: FinetuneJob) -> str:
    stem = job.base_model.name if job.base_model else Path(job.base_path).name
    return f"{stem}-ft{job.id}"[:100]


def serves_as_adapter(job: FinetuneJob) -> bool:
    """Whether a job's model is promoted as a LoRA adapter on its base's vLLM servers (a LoRA job
    on a vLLM-served base) rather than as a merged model on the local engine."""
    base = job.base_model
    return bool(job.hyperparameters.get("lora")) and base is not None and base.engine == Engine.VLLM


def job_promote(*, job_id: int) -> FinetuneJob:
    """Register a trained, evaluated job's model in the hub; it enters pair sampling as a new
    model (boosted until it has votes). The merged model is served by the local engine from the
    models directory; a LoRA job on a vLLM-served base is served by the base's vLLM servers as
    the base plus the adapter (copied into the models directory), loaded into them at once."""
    from modelhub.services import adapter_load
    from modelhub.services.registry import models_load

    with transaction.atomic():
        job = (
            FinetuneJob.objects.select_for_update(of=("self",))
            .select_related("version", "version__dataset", "base_model")
            .get(id=job_id)
        )
        if job.state != JobState.DONE:
            raise JobError("Only a trained and evaluated job can be promoted.")
        adapter = serves_as_adapter(job)
        out = Path(job.output_dir)
        source, marker = (
            (out / "adapter", "adapter_config.json") if adapter else (out / "model", "config.json")
        )
        if not (source / marker).exists():
            raise JobError(
                f"The job's {'adapter' if adapter else 'model'} is missing from {source}."
            )
        name = promoted_name(job)
        target = Path(settings.MODELS_DIR) / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        if adapter and (out / "model" / "README.md").exists():
            shutil.copyfile(out / "model" / "README.md", target / "README.md")  # the job's card
        base = job.base_model
        entry: dict[str, Any] = {
            "name": name,
            "display_name": f"{base.label if base else name} + {job.version}"[:200],
            "organization": "Ludus fine-tune",
            "license": base.license if base else "",
            "engine": Engine.LOCAL,
            "path": name,
            "max_model_len": base.max_model_len if base else None,
            "heldout_loss": job.metrics.get("heldout_loss_after"),
            # It calls the tools its base was given (the gate checked it on them).
            "tools": list(base.tools) if base else [],
            "source_url": reverse("training-job", args=[job.id]),
            "source_label": f"fine-tuned: job #{job.id} on {job.version}"[:300],
            "endpoints": [{"base_url": settings.LOCAL_ENGINE_URL}],
        }
        if adapter:
            assert base is not None
            entry.update(
                engine=Engine.VLLM,
                lora_base=base.name,
                queue=base.queue,  # the same servers answer it
                tool_call_parser=base.tool_call_parser,
                endpoints=[
                    {"base_url": e.base_url, "api_key_env": e.api_key_env}
                    for e in base.endpoints.filter(enabled=True)
                ],
            )
        (model,) = models_load(entries=[entry])
        (target / "ludus_job.json").write_text(
            json.dumps({"job": job.id, "dataset_version": job.version_id}) + "\n"
        )
        job.promoted_model = model
        job.state = JobState.PROMOTED
        job.save(update_fields=["promoted_model", "state"])
    if adapter:
        adapter_load(model=model)
    return job
