from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from modelhub import health


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
