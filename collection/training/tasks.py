"""The fine-tuning job's Celery task: a thin adapter on the ``train`` queue.

Acknowledged late and rejected when its worker is lost, so a job whose worker was killed is
delivered again and resumes from its last checkpoint. Its time limits stay under the Redis
broker's visibility timeout (one hour), past which a running task would be delivered twice.
"""

from __future__ import annotations

from celery import shared_task

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
