"""/healthz, /metrics and endpoint probing."""

from __future__ import annotations

import httpx
import pytest
from django.test import Client

from modelhub import metrics, presence, redis_clients, selectors, services
from modelhub.tasks import probe_endpoints
from tests.factories import EndpointFactory, ModelFactory
from tests.prometheus import metric_types, metric_value

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_it_reports_healthy_when_database_redis_and_every_queue_have_workers(
    celery_worker, client: Client
) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert all(
        body["queues"][q]["ok"]
        for q in ["default", "pipeline", "gen.local", "gen.openai", "gen.vllm"]
    )
    assert celery_worker in body["queues"]["gen.openai"]["workers"]


def test_it_answers_503_naming_a_queue_without_workers(
    celery_worker, client: Client, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.LUDUS_REQUIRED_QUEUES = ["default", "gen.nobody"]
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["queue:gen.nobody"]


def test_it_counts_a_worker_only_while_its_presence_lasts(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.LUDUS_REQUIRED_QUEUES = ["gen.solo"]
    presence.presence_announce(hostname="solo@host", queues=["gen.solo"], host="host")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["queues"]["gen.solo"]["workers"] == ["solo@host"]
    assert 0 < redis_clients.client().ttl(presence.presence_key("solo@host")) <= presence.TTL_S
    presence.presence_withdraw(hostname="solo@host")
    assert client.get("/healthz").json()["down"] == ["queue:gen.solo"]


def test_it_reports_a_down_endpoint_as_degraded_not_down(celery_worker, client: Client) -> None:  # type: ignore[no-untyped-def]
    EndpointFactory.create(base_url="http://127.0.0.1:9/v1", healthy=False, last_error="refused")
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["endpoints"][0]["healthy"] is False


def test_it_takes_a_failing_endpoint_out_of_sampling_and_brings_it_back(upstream) -> None:  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory.create(base_url=upstream.base_url)
    other = EndpointFactory.create(base_url=upstream.base_url)
    assert set(selectors.models_available()) == {endpoint.model, other.model}
    control = upstream.base_url.removesuffix("/v1") + "/down"
    httpx.post(control, params={"down": "1"})
    try:
        probe_endpoints()
        endpoint.refresh_from_db()
        assert endpoint.healthy is False and "503" in endpoint.last_error
        assert list(selectors.models_available()) == []
    finally:
        httpx.post(control, params={"down": "0"})
    probe_endpoints()
    endpoint.refresh_from_db()
    assert endpoint.healthy is True and endpoint.consecutive_failures == 0
    assert set(selectors.models_available()) == {endpoint.model, other.model}


def test_it_probes_with_a_one_token_completion(upstream) -> None:  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory.create(
        base_url=upstream.base_url, model=ModelFactory.create(served_name="fake-500")
    )
    healthy, error = services.endpoint_probe(endpoint=endpoint)
    assert healthy is False and "500" in error  # /models answers, the completion does not


def test_it_exposes_prometheus_metrics_to_allowed_callers(upstream, settings) -> None:  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory.create(base_url=upstream.base_url)
    local = Client(REMOTE_ADDR="127.0.0.1")
    response = local.get("/metrics")
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    types = metric_types(body)
    assert types["ludus_endpoint_up"] == "gauge"
    assert types["ludus_endpoint_requests"] == "counter"
    assert types["ludus_endpoint_ttft_seconds"] == "summary"
    labels = {"model": endpoint.model.name, "endpoint": upstream.base_url}
    assert metric_value(body, "ludus_endpoint_up", **labels) == 1
    assert metric_value(body, "ludus_endpoint_requests_total", **labels) == 0
    assert metric_value(body, "ludus_queue_depth", queue="gen.openai") == 0
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 403
    settings.METRICS_TOKEN = "s3cret"
    assert local.get("/metrics").status_code == 403
    assert local.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_it_escapes_odd_model_names_and_urls_in_metric_labels() -> None:
    name = 'odd "model" \\ {x}\nline'
    url = 'http://h/v1?a="b"&c=}'
    endpoint = EndpointFactory.create(
        base_url=url, healthy=False, model=ModelFactory.create(name=name)
    )
    metrics.request_failed(endpoint.id)
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert metric_value(body, "ludus_endpoint_up", model=name, endpoint=url) == 0
    assert metric_value(body, "ludus_endpoint_errors_total", model=name, endpoint=url) == 1
    assert metric_value(body, "ludus_endpoint_ttft_seconds_count", model=name, endpoint=url) == 0


def test_a_new_endpoint_starts_without_the_figures_of_an_old_one_with_its_id() -> None:
    from django.db import connection

    from modelhub.models import Endpoint

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [Endpoint._meta.db_table]
        )
        next_id = cursor.fetchone()[0]
    # What an endpoint of an earlier database with this id left in Redis.
    metrics.request_failed(next_id)
    assert metrics.endpoint_figures([next_id])[next_id]["errors"] == 1

    EndpointFactory.create(id=next_id, base_url="http://fresh/v1")

    assert metrics.endpoint_figures([next_id])[next_id]["requests"] == 0
    assert metrics.endpoint_figures([next_id])[next_id]["errors"] == 0
