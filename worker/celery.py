"""The Celery app: queues, routing, base task and beat schedule. Tasks live in each app's tasks.py."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ludus")
app.config_from_object("django.conf:settings", namespace="CELERY")

# Generation queues: one per engine kind, so GPU hosts can consume gen.vllm only. A model may also
# name its own queue (Model.queue) for a dedicated worker.
GENERATION_QUEUES = ("gen.local", "gen.openai", "gen.vllm")
app.conf.task_queues = [Queue(name) for name in ("default", "pipeline", "train", *GENERATION_QUEUES)]
app.conf.task_default_queue = "default"
app.conf.task_routes = {
    "modelhub.tasks.*": {"queue": "default"},
}
app.conf.beat_schedule = {
    "probe-endpoints": {"task": "modelhub.tasks.probe_endpoints", "schedule": 5.0},
    "reap-stale-generations": {"task": "modelhub.tasks.reap_stale_generations", "schedule": 5.0},
}
app.autodiscover_tasks()
