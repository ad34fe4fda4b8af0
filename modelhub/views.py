from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from modelhub import health


def _has_metrics_token(request: HttpRequest) -> bool:
    """Whether the request carries `Authorization: Bearer <LUDUS_METRICS_TOKEN>` (never, while no
    token is configured)."""
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def _is_staff(request: HttpRequest) -> bool:
    return request.user.is_authenticated and request.user.is_staff


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the site can serve, 503 when a part is down. Anyone gets {"status": "ok" |
    "degraded" | "down"}; staff and the metrics token get the report's details too. A missing or
    wrong token is answered like an anonymous caller (status alone, never 403), so the HTTP status
    always says health and a load balancer's check needs no credential."""
    ok, report = health.health_report()
    body = (
        report
        if _is_staff(request) or _has_metrics_token(request)
        else {"status": report["status"]}
    )
    return JsonResponse(body, status=200 if ok else 503)


def _metrics_allowed(request: HttpRequest) -> bool:
    if _is_staff(request) or _has_metrics_token(request):
        return True
    # Without a configured token, a scraper on the same host needs none.
    return not settings.METRICS_TOKEN and request.META.get("REMOTE_ADDR") in {"127.0.0.1", "::1"}


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
    return HttpResponse(health.metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
