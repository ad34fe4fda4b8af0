from __future__ import annotations

import hmac
from datetime import timedelta

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from modelhub import health, metrics
from modelhub.models import Endpoint, Generation, GenerationStatus


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    ok, body = health.health_report()
    return JsonResponse(body, status=200 if ok else 503)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given, token)
    if request.user.is_authenticated and request.user.is_staff:
        return True
    return request.META.get("REMOTE_ADDR") in {"127.0.0.1", "::1"}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition of per-endpoint serving figures and queue depths."""
    if not _metrics_allowed(request):
        return HttpResponse(
            "metrics are restricted: send Authorization: Bearer <LUDUS_METRICS_TOKEN>\n",
            status=403,
            content_type="text/plain",
        )
    endpoints = list(Endpoint.objects.select_related("model"))
    figures = metrics.endpoint_figures([ep.id for ep in endpoints])
    inflight = _inflight_by_endpoint()
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    series = [
        (
            "ludus_endpoint_up",
            "gauge",
            "1 when the endpoint's last probe or request succeeded",
            lambda ep, f: 1 if ep.healthy else 0,
        ),
        (
            "ludus_endpoint_inflight",
            "gauge",
            "Generations streaming from the endpoint",
            lambda ep, f: inflight.get(ep.id, 0),
        ),
        (
            "ludus_endpoint_requests_total",
            "counter",
            "Generation requests sent to the endpoint (counted as they end)",
            lambda ep, f: f["requests"],
        ),
        (
            "ludus_endpoint_errors_total",
            "counter",
            "Generation requests that failed",
            lambda ep, f: f["errors"],
        ),
        (
            "ludus_endpoint_error_ratio",
            "gauge",
            "errors / requests",
            lambda ep, f: round(f["error_rate"], 6),
        ),
        (
            "ludus_endpoint_ttft_seconds_sum",
            "counter",
            "Sum of time to first token",
            lambda ep, f: f["ttft_ms_sum"] / 1000,
        ),
        (
            "ludus_endpoint_ttft_seconds_count",
            "counter",
            "Requests with a first token",
            lambda ep, f: f["ttft_count"],
        ),
        (
            "ludus_endpoint_tokens_total",
            "counter",
            "Completion tokens streamed",
            lambda ep, f: f["tokens"],
        ),
        (
            "ludus_endpoint_tokens_per_second",
            "gauge",
            "Average streaming speed",
            lambda ep, f: round(f["tokens_per_s"], 3),
        ),
    ]
    for name, kind, help_text, getter in series:
        family(name, kind, help_text)
        for ep in endpoints:
            labels = f'model="{_label(ep.model.name)}",endpoint="{_label(ep.base_url)}"'
            lines.append(f"{name}{{{labels}}} {getter(ep, figures[ep.id])}")
    family("ludus_queue_depth", "gauge", "Messages waiting in a Celery queue")
    for queue, depth in health.queue_depths([*health.required_queues(), "train"]).items():
        lines.append(f'ludus_queue_depth{{queue="{queue}"}} {depth}')
    return HttpResponse(
        "\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8"
    )


def _inflight_by_endpoint() -> dict[int, int]:
    from django.db.models import Count

    rows = (
        Generation.objects.filter(status=GenerationStatus.STREAMING, endpoint__isnull=False)
        .values("endpoint_id")
        .annotate(n=Count("id"))
    )
    return {row["endpoint_id"]: row["n"] for row in rows}


def _votes_per_minute() -> int | None:
    """Votes in the last minute, once the arena stores votes."""
    try:
        from arena.models import Vote  # type: ignore[attr-defined]
    except ImportError:
        return None
    return int(Vote.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=1)).count())


@staff_member_required
@require_GET
@never_cache
def status_page(request: HttpRequest) -> HttpResponse:
    """Staff-only live view of the serving pool; htmx refreshes the `pool` partial every 2 s."""
    endpoints = list(Endpoint.objects.select_related("model").order_by("model__name", "id"))
    figures = metrics.endpoint_figures([ep.id for ep in endpoints])
    inflight = _inflight_by_endpoint()
    rows = [
        {"endpoint": ep, "figures": figures[ep.id], "inflight": inflight.get(ep.id, 0)}
        for ep in endpoints
    ]
    ok, report = health.health_report()
    context = {
        "rows": rows,
        "ok": ok,
        "report": report,
        "queue_depths": health.queue_depths([*health.required_queues(), "train"]),
        "votes_per_minute": _votes_per_minute(),
        "now": timezone.now(),
    }
    template = "modelhub/status.html#pool" if request.htmx else "modelhub/status.html"  # type: ignore[attr-defined]
    return render(request, template, context)
