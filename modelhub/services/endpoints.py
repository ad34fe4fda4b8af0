"""Endpoint health: what a request or a probe learned about an endpoint. Probes use httpx, which
takes proxies from the environment as the streams' client does (modelhub.client), and, like it,
follow no redirect: the API key goes to the endpoint's own URL only."""

from __future__ import annotations

import httpx
from django.db.models import F
from django.utils import timezone

from modelhub import client as oai
from modelhub.models import Endpoint
from modelhub.selectors import endpoint_api_key

_http = httpx.Client(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200))


def endpoint_mark_failure(*, endpoint: Endpoint, error: str) -> None:
    now = timezone.now()
    Endpoint.objects.filter(id=endpoint.id).update(
        healthy=False,
        last_error=error[:1000],
        last_checked_at=now,
        consecutive_failures=F("consecutive_failures") + 1,
    )


def endpoint_mark_success(*, endpoint: Endpoint) -> None:
    if endpoint.healthy and endpoint.consecutive_failures == 0:
        return
    now = timezone.now()
    Endpoint.objects.filter(id=endpoint.id).update(
        healthy=True, consecutive_failures=0, last_ok_at=now, last_checked_at=now, last_error=""
    )


def endpoint_probe(*, endpoint: Endpoint, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Probe an endpoint: its model list (the health route every OpenAI-compatible server has) and a
    one-token completion. Updates the endpoint's health and returns (healthy, error)."""
    error = ""
    api_key = endpoint_api_key(endpoint)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = _http.get(
            endpoint.base_url.rstrip("/") + "/models",
            headers=headers,
            timeout=timeout_s,
            follow_redirects=False,
        )
        if response.status_code >= 300:
            error = f"GET /models answered HTTP {response.status_code}"
            if response.is_redirect:
                error += " (a redirect, not followed: set base_url to the final address)"
        else:
            oai.complete(
                _http,
                endpoint.base_url,
                endpoint.model.upstream_name,
                [{"role": "user", "content": "ping"}],
                {"max_tokens": 1, "temperature": 0},
                api_key,
                oai.Timeouts(connect=timeout_s, read=timeout_s),
            )
    except (httpx.HTTPError, oai.UpstreamError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    if error:
        endpoint_mark_failure(endpoint=endpoint, error=error)
    else:  # written even when it was healthy already: when it was last seen answering
        now = timezone.now()
        Endpoint.objects.filter(id=endpoint.id).update(
            healthy=True, consecutive_failures=0, last_error="", last_checked_at=now, last_ok_at=now
        )
    return (not error, error)
