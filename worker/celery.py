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
app.conf.task_queues = [
    Queue(name) for name in ("default", "pipeline", "train", *GENERATION_QUEUES)
]
app.conf.task_default_queue = "default"
# A running task keeps running when the broker connection drops (Celery 6 is to cancel every
# late-acknowledged one instead): an answer streams through Redis Streams and PostgreSQL, not the
# broker, and a redelivered message claims nothing that is no longer queued.
app.conf.worker_cancel_long_running_tasks_on_connection_loss = False
app.conf.task_routes = {
    "modelhub.tasks.*": {"queue": "default"},
    "collection.training.tasks.*": {"queue": "train"},
}
app.conf.beat_schedule = {
    "probe-endpoints": {"task": "modelhub.tasks.probe_endpoints", "schedule": 5.0},
    "reap-stale-generations": {"task": "modelhub.tasks.reap_stale_generations", "schedule": 5.0},
    "expire-quest-leases": {"task": "collection.tasks.expire_leases", "schedule": 60.0},
    "refresh-reliabilities": {"task": "collection.tasks.refresh_reliabilities", "schedule": 300.0},
    "refresh-leaderboard": {
        "task": "arena.tasks.refresh_leaderboard",
        "schedule": 60.0,
        "options": {"queue": "default"},
    },
    "scan-offensive-battles": {
        "task": "collection.tasks.scan_offensive_battles",
        "schedule": 300.0,
        "options": {"queue": "default"},
    },
    "scan-voter-anomalies": {
        "task": "collection.tasks.scan_voter_anomalies",
        "schedule": 300.0,
        "options": {"queue": "default"},
    },
    "resume-orphaned-finetunes": {
        "task": "collection.training.tasks.finetune_resume_orphans",
        "schedule": 60.0,
        "options": {"queue": "default"},
    },
    "clear-expired-sessions": {
        "task": "arena.tasks.clear_expired_sessions",
        "schedule": 3600.0,
        "options": {"queue": "default"},
    },
}
app.autodiscover_tasks()
app.autodiscover_tasks(["collection.training"])  # fine-tuning jobs

# -- worker presence ---------------------------------------------------------------------------
# Each worker announces the queues it consumes through modelhub.presence, which /healthz reads.

import contextlib  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

from celery.signals import worker_process_init, worker_ready, worker_shutdown  # noqa: E402

_presence_stop = threading.Event()
_presence_threads: list[threading.Thread] = []


def _presence_loop(hostname: str, queues: list[str]) -> None:
    from modelhub import presence

    while not _presence_stop.is_set():
        with contextlib.suppress(Exception):  # Redis briefly down: try again next beat
            presence.presence_announce(hostname=hostname, queues=queues, host=socket.gethostname())
        _presence_stop.wait(presence.BEAT_S)
    with contextlib.suppress(Exception):
        presence.presence_withdraw(hostname=hostname)


@worker_ready.connect
def _announce(sender: object, **kwargs: object) -> None:
    from config.process import settle

    _open_database_pool()
    if any(q.name.startswith("gen.") for q in app.amqp.queues.consume_from.values()):
        _start_serving_pool()
    consumer = sender
    hostname = getattr(consumer, "hostname", socket.gethostname())
    queues = sorted(q.name for q in app.amqp.queues.consume_from.values())
    thread = threading.Thread(
        target=_presence_loop, args=(hostname, queues), daemon=True, name="ludus-presence"
    )
    _presence_threads.append(thread)
    thread.start()
    settle()


def _open_database_pool() -> None:
    """Open this process's connection pool now, so it fills to its minimum size before the first
    tasks arrive instead of while a burst of them waits for connections."""
    from django.db import connection

    with contextlib.suppress(Exception):  # the database being down is /healthz's business
        connection.ensure_connection()
        connection.close()


def _start_serving_pool() -> None:
    """Start the stream runner and the flusher of a generation worker before its first task, so
    that task's first token does not wait for them."""
    from modelhub.pool import flusher, runner

    runner().warm()
    flusher()


@worker_process_init.connect
def _settle_child(**kwargs: object) -> None:
    """A prefork pool's children fork before worker_ready: each settles on its own."""
    from config.process import settle

    settle()


@worker_shutdown.connect
def _withdraw(**kwargs: object) -> None:
    _presence_stop.set()
    for thread in _presence_threads:  # the process exits next: let the loop withdraw first
        thread.join(timeout=5)
