"""/healthz, /metrics and endpoint probing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from modelhub import metrics, presence, redis_clients, selectors, services
from modelhub.tasks import probe_endpoints
from tests.factories import EndpointFactory, ModelFactory
from tests.prometheus import metric_types, metric_value

pytestmark = [pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-t0ken-for-tests"

# An endpoint as a hostile reading of /healthz would hope to find one: a password in its URL, its
# API key and an upstream's long error body (echoing both) in its last error.
SECRET_URL = "http://ops:hunter2secret@127.0.0.1:9/v1"
API_KEY = "sk-live-4f9c2a7e1b3d5f60"
ERROR_BODY = (
    "HTTP 401 from http://ops:hunter2secret@127.0.0.1:9/v1/chat/completions?api_key=qs-key-123: "
    f'{{"error": "invalid key {API_KEY}", "authorization": "Bearer {API_KEY}", '
    f'"detail": "{"x" * 900}"}}'
)
SECRETS = ["hunter2secret", API_KEY, "qs-key-123"]


@pytest.fixture
def details(settings) -> Client:  # type: ignore[no-untyped-def]
    """A caller with the metrics token: gets /healthz's details."""
    settings.METRICS_TOKEN = TOKEN
    return Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


@pytest.fixture
def leaky_endpoint(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LUDUS_KEY_TEST_UPSTREAM", API_KEY)
    return EndpointFactory.create(
        base_url=SECRET_URL,
        api_key_env="LUDUS_KEY_TEST_UPSTREAM",
        healthy=False,
        last_error=ERROR_BODY,
        model=ModelFactory.create(name="leaky-model"),
    )


def _staff() -> Client:
    staff = Client()
    alice = get_user_model().objects.create_user("alice", password="pw-alice-123", is_staff=True)
    staff.force_login(alice)
    return staff


def _assert_no_secret(content: bytes) -> None:
    for secret in SECRETS:
        assert secret.encode() not in content


def test_it_answers_anonymous_callers_with_the_status_alone(
    celery_worker, client: Client, leaky_endpoint, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded"}
    settings.LUDUS_REQUIRED_QUEUES = ["gen.nobody"]
    down = client.get("/healthz")
    assert down.status_code == 503 and down.json() == {"status": "down"}


def test_it_answers_a_wrong_or_empty_token_with_the_status_alone(
    celery_worker, leaky_endpoint, settings
) -> None:  # type: ignore[no-untyped-def]
    for configured, sent in [(TOKEN, "Bearer wrong"), (TOKEN, "Bearer "), ("", "Bearer ")]:
        settings.METRICS_TOKEN = configured
        response = Client(HTTP_AUTHORIZATION=sent).get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "degraded"}, (configured, sent)


def test_it_shows_details_to_staff_and_the_token_without_credentials(
    celery_worker, details: Client, leaky_endpoint
) -> None:  # type: ignore[no-untyped-def]
    for caller in (details, _staff()):
        response = caller.get("/healthz")
        assert response.status_code == 200
        _assert_no_secret(response.content)
        body = response.json()
        assert body["status"] == "degraded" and body["degraded"] == ["endpoint:leaky-model"]
        (endpoint,) = body["endpoints"]
        assert endpoint["model"] == "leaky-model"
        assert endpoint["base_url"] == "http://127.0.0.1:9/v1"
        assert endpoint["error"].startswith("HTTP 401 from http://[redacted]@127.0.0.1:9/v1")
        assert "invalid key [redacted]" in endpoint["error"]
        assert len(endpoint["error"]) <= 200


def test_it_redacts_credentials_in_error_texts() -> None:
    from modelhub.health import redact, safe_url

    text = redact(
        'postgresql://u:pa55word@db/x token=abc123 {"password": "p4ss"} Authorization: Basic '
        "dXNlcjpwYXNz hf_abcdefghijklmnopqrstu plain words",
        secrets=["plain"],
    )
    for secret in (
        "pa55word",
        "abc123",
        "p4ss",
        "dXNlcjpwYXNz",
        "hf_abcdefghijklmnopqrstu",
        "plain",
    ):
        assert secret not in text
    assert "words" in text
    assert len(redact("y" * 1000)) == 200
    assert safe_url("https://u:p@[::1]:8443/v1?key=k#f") == "https://[::1]:8443/v1"


def _redis_commands_during(action: Callable[[], object]) -> list[str]:
    """The commands Redis ran on the tests' database (scripts' own commands included) while
    `action` ran, as its MONITOR stream shows them."""
    conn = redis.Redis.from_url(django_settings.REDIS_URL)
    db = conn.connection_pool.connection_kwargs.get("db", 0)
    marker = f"end-of-action-{uuid.uuid4().hex}"
    seen: list[str] = []
    with conn.monitor() as monitor:
        action()
        conn.echo(marker)
        for event in monitor.listen():
            if event["command"] == f"ECHO {marker}":
                return seen
            if event["db"] == db:
                seen.append(event["command"].split(" ", 1)[0].upper())
    raise AssertionError("the monitor stream ended")


def test_it_reads_worker_presence_without_scanning_the_keyspace(details: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.LUDUS_REQUIRED_QUEUES = ["gen.scan"]
    presence.presence_announce(hostname="scan@host", queues=["gen.scan"], host="host")
    responses = []
    commands = _redis_commands_during(lambda: responses.append(details.get("/healthz")))
    assert responses[0].json()["queues"]["gen.scan"]["workers"] == ["scan@host"]
    assert commands, "the monitor saw /healthz's commands"
    assert not {"SCAN", "KEYS"} & set(commands), commands


def test_it_reports_healthy_when_database_redis_and_every_queue_have_workers(
    celery_worker, details: Client
) -> None:  # type: ignore[no-untyped-def]
    response = details.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert all(
        body["queues"][q]["ok"]
        for q in ["default", "pipeline", "gen.local", "gen.openai", "gen.vllm"]
    )
    assert celery_worker in body["queues"]["gen.openai"]["workers"]


def test_it_answers_503_naming_a_queue_without_workers(
    celery_worker, details: Client, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.LUDUS_REQUIRED_QUEUES = ["default", "gen.nobody"]
    response = details.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["queue:gen.nobody"]


def test_it_counts_a_worker_only_while_its_presence_lasts(details: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.LUDUS_REQUIRED_QUEUES = ["gen.solo"]
    presence.presence_announce(hostname="solo@host", queues=["gen.solo"], host="host")
    response = details.get("/healthz")
    assert response.status_code == 200
    assert response.json()["queues"]["gen.solo"]["workers"] == ["solo@host"]
    expires_in = presence.presence_expires_in(hostname="solo@host")
    assert expires_in is not None and 0 < expires_in <= presence.TTL_S
    presence.presence_withdraw(hostname="solo@host")
    assert details.get("/healthz").json()["down"] == ["queue:gen.solo"]


def test_it_drops_an_announcement_once_it_expires(details: Client, settings) -> None:  # type: ignore[no-untyped-def]
    """A worker that dies without withdrawing: gone from /healthz, and from Redis, once its
    announcement expires."""
    settings.LUDUS_REQUIRED_QUEUES = ["gen.expiry"]
    presence.presence_announce(hostname="gone@host", queues=["gen.expiry"], host="host", ttl_s=0.2)
    presence.presence_announce(hostname="live@host", queues=["gen.expiry"], host="host")
    time.sleep(0.3)  # past the first announcement's expiry: this asserts no duration
    assert details.get("/healthz").json()["queues"]["gen.expiry"]["workers"] == ["live@host"]
    conn = redis_clients.client()
    assert conn.zscore(presence.EXPIRIES_KEY, "gone@host") is None
    assert not conn.hexists(presence.PAYLOADS_KEY, "gone@host")
    assert conn.hexists(presence.PAYLOADS_KEY, "live@host")


def test_it_reports_a_down_endpoint_as_degraded_not_down(celery_worker, details: Client) -> None:  # type: ignore[no-untyped-def]
    EndpointFactory.create(base_url="http://127.0.0.1:9/v1", healthy=False, last_error="refused")
    response = details.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["endpoints"][0]["healthy"] is False
    assert body["endpoints"][0]["error"] == "refused"


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
    assert local.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert local.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    assert _staff().get("/metrics").status_code == 200


def test_it_labels_metrics_without_the_endpoint_s_credentials(leaky_endpoint) -> None:  # type: ignore[no-untyped-def]
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content
    _assert_no_secret(body)
    labels = {"model": "leaky-model", "endpoint": "http://127.0.0.1:9/v1"}
    assert metric_value(body.decode(), "ludus_endpoint_up", **labels) == 0


def test_it_escapes_odd_model_names_and_urls_in_metric_labels() -> None:
    name = 'odd "model" \\ {x}\nline'
    url = 'http://h/v1/"b"\\c}'
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
