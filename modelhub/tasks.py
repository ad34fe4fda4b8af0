"""Celery tasks of the model hub: thin adapters that take ids and call one service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections

from modelhub import selectors, services
from modelhub.models import Endpoint


@shared_task(
    name=services.RUN_GENERATION_TASK,  # the services enqueue it by this name
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # The thread pool does not enforce time limits; the service enforces its own deadline and the
    # upstream read timeout. These limits apply where a prefork pool runs the task.
    soft_time_limit=settings.GENERATION_TIME_LIMIT + 30,
    time_limit=settings.GENERATION_TIME_LIMIT + 60,
)
def run_generation(*generation_ids: str) -> None:
    """Stream these generations (one, or a battle's answers) side by side."""
    try:
        services.generations_run(generation_ids=generation_ids)
    finally:
        close_old_connections()


@shared_task(ignore_result=True, expires=10, time_limit=30)
def probe_endpoints() -> None:
    endpoints = selectors.endpoints_to_probe()

    def probe(endpoint: Endpoint) -> None:
        try:
            services.endpoint_probe(endpoint=endpoint)
        finally:
            close_old_connections()

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(endpoints)))) as pool:
        list(pool.map(probe, endpoints))


@shared_task(ignore_result=True, expires=10, time_limit=30)
def reap_stale_generations() -> int:
    services.generations_requeue_lost()
    return services.generation_reap_stale()
