"""What /healthz, /metrics and the status page report: services, queues, workers, endpoints.

Reads only: the pool's rows and figures as they stand when asked. Nothing here hands out a
credential: endpoint URLs lose their user info and query (`safe_url`), and error texts are
redacted and bounded (`redact`) before they reach a report, a metric label or the status page."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connection
from django.db.models import Count
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from modelhub import metrics, presence
from modelhub.models import Endpoint, Generation, GenerationStatus
from modelhub.redis_clients import client as redis_client
from modelhub.selectors import endpoint_api_key

_Family = type[CounterMetricFamily] | type[GaugeMetricFamily]

STUCK = {"BACKOFF", "FATAL"}  # supervisord's states of a process that is not running
ERROR_CHARS = 200  # of an error text in a report: enough to say what failed, not to carry a body
REDACTED = "[redacted]"

# Credentials as they appear in error texts (an upstream's echoed request, a driver's message):
# URL user info, query values, Authorization schemes, key=value / "key": "value" pairs whose name
# says secret, and the key shapes of the common hosted APIs.
_CREDENTIAL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), rf"\1{REDACTED}@"),
    (re.compile(r"([?&][^=\s&#]+=)[^&\s#\"']+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[\w.~+/=-]+"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|[\w-]*(?:token|secret|password|passwd|credential)s?"
            r"|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b(?:sk|hf|ghp|xox[abp])[-_][\w-]{12,}"), REDACTED),
)


def safe_url(url: str) -> str:
    """`url` as reports show it: scheme, host, port and path, without user info or query."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


def url_secrets(url: str) -> list[str]:
    """The credentials a URL holds (its user info's password, raw and decoded)."""
    password = urlsplit(url).password
    return [password, unquote(password)] if password else []


def redact(text: str, *, secrets: Iterable[str | None] = (), limit: int = ERROR_CHARS) -> str:
    """`text` with every known secret and anything shaped like a credential replaced, then cut
    to `limit` characters (in that order, so the cut cannot leave half a secret unmatched)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _CREDENTIAL_PATTERNS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _service_error(exc: Exception) -> str:
    secrets = [*url_secrets(settings.DATABASE_URL), *url_secrets(settings.REDIS_URL)]
    return redact(f"{type(exc).__name__}: {exc}", secrets=secrets)


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
        return False, _service_error(exc)


def check_redis() -> tuple[bool, str]:
    try:
        redis_client().ping()
        return True, ""
    except Exception as exc:
        return False, _service_error(exc)


def queue_depths() -> dict[str, int]:
    """Messages waiting in each required queue and in the train queue."""
    queues = [*required_queues(), "train"]
    pipe = redis_client().pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return dict(zip(queues, pipe.execute(), strict=True))


def endpoint_url(endpoint: Endpoint) -> str:
    """The endpoint's base URL as reports show it (see safe_url)."""
    return safe_url(endpoint.base_url)


def endpoint_error(endpoint: Endpoint) -> str:
    """The endpoint's last error as reports show it: without its URL's password or its API key,
    and bounded (the stored text may hold an upstream's error body)."""
    secrets = [*url_secrets(endpoint.base_url), endpoint_api_key(endpoint)]
    return redact(endpoint.last_error, secrets=secrets)


@dataclass(frozen=True)
class EndpointRow:
    endpoint: Endpoint
    figures: dict[str, float]  # see metrics.endpoint_figures
    inflight: int  # answers streaming from it now

    @property
    def url(self) -> str:
        return endpoint_url(self.endpoint)

    @property
    def error(self) -> str:
        return endpoint_error(self.endpoint)


def endpoint_rows() -> list[EndpointRow]:
    """Every endpoint (enabled or not) with its model, serving figures and load, by model name."""
    endpoints = list(Endpoint.objects.select_related("model").order_by("model__name", "id"))
    figures = metrics.endpoint_figures([ep.id for ep in endpoints])
    streaming = (
        Generation.objects.filter(status=GenerationStatus.STREAMING, endpoint__isnull=False)
        .values("endpoint_id")
        .annotate(n=Count("id"))
    )
    inflight = {row["endpoint_id"]: row["n"] for row in streaming}
    return [EndpointRow(ep, figures[ep.id], inflight.get(ep.id, 0)) for ep in endpoints]


def supervised_processes() -> dict[str, dict[str, Any]]:
    """The processes `make run`'s supervisor runs, as it records them in the data folder
    (ludus_dev.supervision writes `supervisor/processes.json`): each one's state, pid, restarts and
    last exit ({"reason": "terminated by SIGKILL", "code": -9, "at": ...}). Empty where no
    supervisor writes it (under systemd, `systemctl status 'ludus-*'` says the same)."""
    try:
        processes = json.loads((settings.DATA_DIR / "supervisor" / "processes.json").read_text())
    except (OSError, ValueError):
        return {}
    return processes if isinstance(processes, dict) else {}


def pool_status() -> dict[str, Any]:
    """The serving pool as the staff status page shows it: health, endpoints, queues."""
    ok, report = health_report()
    return {"ok": ok, "report": report, "rows": endpoint_rows(), "queue_depths": queue_depths()}


def health_report() -> tuple[bool, dict[str, Any]]:
    """Whether the site can serve (database, Redis and a worker on every required queue), and the
    report in full: for staff and the metrics token only (see modelhub.views.healthz)."""
    down: list[str] = []
    db_ok, db_error = check_database()
    redis_ok, redis_error = check_redis()
    if not db_ok:
        down.append("database")
    if not redis_ok:
        down.append("redis")
    queues: dict[str, Any] = {}
    if redis_ok:
        workers = presence.presence_list()
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
                    "arena_eligible": endpoint.model.arena_eligible,
                    "base_url": endpoint_url(endpoint),
                    "healthy": endpoint.healthy,
                    "last_checked_at": endpoint.last_checked_at.isoformat()
                    if endpoint.last_checked_at
                    else None,
                    "error": endpoint_error(endpoint),
                }
            )
            if not endpoint.healthy:
                degraded.append(f"endpoint:{endpoint.model.name}")
    processes = supervised_processes()
    # Not running and not about to: between retries of one that keeps exiting, or given up on.
    degraded += [f"process:{name}" for name, p in processes.items() if p.get("state") in STUCK]
    ok = not down
    body = {
        "status": "ok" if ok and not degraded else ("degraded" if ok else "down"),
        "down": down,
        "degraded": degraded,
        "database": {"ok": db_ok, "error": db_error},
        "redis": {"ok": redis_ok, "error": redis_error},
        "queues": queues,
        "endpoints": endpoints,
        "processes": processes,
    }
    return ok, body


class PoolCollector:
    """/metrics' series, read from the endpoint rows, their Redis figures and the queue depths
    at each scrape (a prometheus_client collector)."""

    SERIES: tuple[tuple[_Family, str, str, Callable[[EndpointRow], float]], ...] = (
        (GaugeMetricFamily, "ludus_endpoint_up", "1 when the endpoint's last probe or request succeeded", lambda row: 1 if row.endpoint.healthy else 0),
        (GaugeMetricFamily, "ludus_endpoint_inflight", "Generations streaming from the endpoint", lambda row: row.inflight),
        (CounterMetricFamily, "ludus_endpoint_requests", "Generation requests sent to the endpoint (counted as they end)", lambda row: row.figures["requests"]),
        (CounterMetricFamily, "ludus_endpoint_errors", "Generation requests that failed", lambda row: row.figures["errors"]),
        (GaugeMetricFamily, "ludus_endpoint_error_ratio", "errors / requests", lambda row: row.figures["error_rate"]),
        (CounterMetricFamily, "ludus_endpoint_tokens", "Completion tokens streamed", lambda row: row.figures["tokens"]),
        (GaugeMetricFamily, "ludus_endpoint_tokens_per_second", "Average streaming speed", lambda row: row.figures["tokens_per_s"]),
    )  # fmt: skip

    def collect(self) -> Iterator[Metric]:
        rows = endpoint_rows()
        labels = ["model", "endpoint"]
        for family_type, name, help_text, value in self.SERIES:
            family = family_type(name, help_text, labels=labels)
            for row in rows:
                family.add_metric([row.endpoint.model.name, row.url], value(row))
            yield family
        ttft = SummaryMetricFamily(
            "ludus_endpoint_ttft_seconds",
            "Time to first token of the requests that had one",
            labels=labels,
        )
        for row in rows:
            ttft.add_metric(
                [row.endpoint.model.name, row.url],
                count_value=int(row.figures["ttft_count"]),
                sum_value=row.figures["ttft_ms_sum"] / 1000,
            )
        yield ttft
        depth = GaugeMetricFamily(
            "ludus_queue_depth", "Messages waiting in a Celery queue", labels=["queue"]
        )
        for queue, waiting in queue_depths().items():
            depth.add_metric([queue], waiting)
        yield depth


# The hub's own registry, not prometheus_client's global one, which would also expose whatever
# else registers there in this process (and collide when tests build several).
_registry = CollectorRegistry(auto_describe=False)
_registry.register(PoolCollector())


def metrics_exposition() -> bytes:
    """Prometheus text for /metrics, read now."""
    return generate_latest(_registry)
