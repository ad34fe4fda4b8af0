"""The fine-tuning job's Celery task: a thin adapter on the ``train`` queue.

Acknowledged late and rejected when its worker is lost, so a job whose training process was
killed is delivered again and resumes from its last checkpoint. Its time limits stay under the
Redis broker's visibility timeout (one hour), past which a running task would be delivered twice.
When the whole worker dies (its host went down), the broker keeps the task until that timeout;
the beat's sweep puts the job back in the queue within a minute instead.
"""

from __future__ import annotations

from celery import shared_task

from collection.models import FinetuneJob, JobState
from collection.training import services


@shared_task(
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3300,
    time_limit=3500,
)
def finetune_run(job_id: int) -> None:
    services.job_run(job_id=job_id)


@shared_task(ignore_result=True)
def finetune_resume_orphans() -> list[int]:
    """Queue again each job left running or evaluating by a worker that died; it goes on from its
    last checkpoint. A second delivery of the same job later finds it trained or training and
    leaves it (the run lock)."""
    resumed = []
    for job in FinetuneJob.objects.filter(state__in=(JobState.RUNNING, JobState.EVALUATING)):
        if services.job_is_orphaned(job):
            try:
                services.job_resume(job_id=job.id)
            except services.JobError:  # it finished, or a worker took it, in the meantime
                continue
            resumed.append(job.id)
    return resumed
