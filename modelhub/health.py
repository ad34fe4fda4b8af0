"""What /healthz, /metrics and the status page report: services, queues, workers, endpoints."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import connection

from modelhub.pool import redis_client
from worker.celery import WORKER_KEY_PREFIX


def required_queues() -> list[str]:
    """Queues that must have a live worker for the site to be healthy (LUDUS_REQUIRED_QUEUES). The
    train queue is not among them by default: it is consumed only where a GPU host joins."""
    return list(settings.LUDUS_REQUIRED_QUEUES)


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, ""
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def check_redis() -> tuple[bool, str]:
    try:
        redis_client().ping()
        return True, ""
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def live_workers() -> list[dict[str, Any]]:
    client = redis_client()
    keys = list(client.scan_iter(match=WORKER_KEY_PREFIX + "*", count=500))
    if not keys:
        return []
    return [json.loads(raw) for raw in client.mget(keys) if raw]


def queue_depths(queues: list[str]) -> dict[str, int]:
    pipe = redis_client().pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return dict(zip(queues, pipe.execute(), strict=True))


def health_report() -> tuple[bool, dict[str, Any]]:
    from modelhub.models import Endpoint

    down: list[str] = []
    db_ok, db_error = check_database()
    redis_ok, redis_error = check_redis()
    if not db_ok:
        down.append("database")
    if not redis_ok:
        down.append("redis")
    queues: dict[str, Any] = {}
    if redis_ok:
        workers = live_workers()
        for queue in sorted(set(required_queues()) | {q for w in workers for q in w["queues"]}):
            names = sorted(w["hostname"] for w in workers if queue in w["queues"])
            queues[queue] = {
                "workers": names,
                "required": queue in required_queues(),
                "ok": bool(names),
            }
            if not names and queue in required_queues():
                down.append(f"queue:{queue}")
    endpoints: list[dict[str, Any]] = []
    degraded = []
    if db_ok:
        for endpoint in Endpoint.objects.filter(enabled=True, model__enabled=True).select_related(
            "model"
        ):
            endpoints.append(
                {
                    "model": endpoint.model.name,
                    "base_url": endpoint.base_url,
                    "healthy": endpoint.healthy,
                    "last_checked_at": endpoint.last_checked_at.isoformat()
                    if endpoint.last_checked_at
                    else None,
                    "error": endpoint.last_error,
                }
            )
            if not endpoint.healthy:
                degraded.append(f"endpoint:{endpoint.model.name}")
    ok = not down
    body = {
        "status": "ok" if ok and not degraded else ("degraded" if ok else "down"),
        "down": down,
        "degraded": degraded,
        "database": {"ok": db_ok, "error": db_error},
        "redis": {"ok": redis_ok, "error": redis_error},
        "queues": queues,
        "endpoints": endpoints,
    }
    return ok, body
