"""Endpoint API keys: read only from LUDUS_KEY_* variables, sent only to the endpoint's own URL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.test import RequestFactory

from modelhub import client as oai
from modelhub.models import Endpoint, Model
from modelhub.selectors import endpoint_api_key
from modelhub.services import ModelConfigError, endpoint_probe, models_load
from tests.factories import EndpointFactory, ModelFactory

pytestmark = pytest.mark.django_db

FORBIDDEN = ["DJANGO_SECRET_KEY", "DATABASE_URL", "OPENAI_API_KEY", "ludus_key_x", "LUDUS_KEY_"]


@pytest.mark.parametrize("name", FORBIDDEN)
def test_a_models_file_may_not_name_any_other_variable(name: str) -> None:
    entry = {"name": "m", "endpoints": [{"base_url": "http://a/v1", "api_key_env": name}]}
    with pytest.raises(ModelConfigError, match="LUDUS_KEY_"):
        models_load(entries=[entry])
    assert not Model.objects.filter(name="m").exists()
    assert not Endpoint.objects.filter(base_url="http://a/v1").exists()


def test_a_models_file_names_a_ludus_key_variable() -> None:
    entry = {"name": "m", "endpoints": [{"base_url": "http://a/v1", "api_key_env": "LUDUS_KEY_A1"}]}
    (model,) = models_load(entries=[entry])
    assert model.endpoints.get().api_key_env == "LUDUS_KEY_A1"


@pytest.mark.parametrize("name", FORBIDDEN)
def test_an_endpoint_row_refuses_other_variables(name: str) -> None:
    endpoint = Endpoint(model=ModelFactory.create(), base_url="http://a/v1", api_key_env=name)
    with pytest.raises(ValidationError) as refused:
        endpoint.full_clean()
    assert "api_key_env" in refused.value.message_dict


def test_the_admin_form_refuses_other_variables(db: None) -> None:
    from django.contrib.auth import get_user_model

    model = ModelFactory.create()
    request = RequestFactory().post("/admin/")
    request.user = get_user_model().objects.create_superuser("root", password="pw-root-123")
    inline = next(
        i
        for i in admin.site._registry[Model].get_inline_instances(request, model)
        if i.model is Endpoint
    )
    formset_class = inline.get_formset(request, model)

    def formset(name: str) -> Any:
        prefix = formset_class.get_default_prefix()
        data = {
            f"{prefix}-TOTAL_FORMS": "1", f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-0-base_url": "http://a/v1", f"{prefix}-0-api_key_env": name,
            f"{prefix}-0-enabled": "on",
        }  # fmt: skip
        return formset_class(data, instance=model, prefix=prefix)

    refused = formset("DJANGO_SECRET_KEY")
    assert not refused.is_valid()
    assert "LUDUS_KEY_" in str(refused.errors[0]["api_key_env"])
    assert formset("LUDUS_KEY_OPENAI").is_valid()


def test_a_row_naming_another_variable_reads_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = EndpointFactory.create()
    Endpoint.objects.filter(id=endpoint.id).update(api_key_env="DJANGO_SECRET_KEY")
    endpoint.refresh_from_db()
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-signing-key")
    assert endpoint_api_key(endpoint) is None
    monkeypatch.setenv("LUDUS_KEY_UPSTREAM", "sk-upstream")
    Endpoint.objects.filter(id=endpoint.id).update(api_key_env="LUDUS_KEY_UPSTREAM")
    endpoint.refresh_from_db()
    assert endpoint_api_key(endpoint) == "sk-upstream"


class _Recorder(ThreadingHTTPServer):
    """A server that records each request's method, path and Authorization header; it redirects
    everything to `redirect_to` when set, else answers as an OpenAI-compatible endpoint."""

    def __init__(self, redirect_to: str = "") -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.redirect_to = redirect_to
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        if self.server.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.server.redirect_to + self.path.removeprefix("/v1"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"data": [], "choices": [{"message": {"content": "pong"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hosts() -> Iterator[tuple[_Recorder, _Recorder]]:
    """An endpoint that redirects every request to another host (another origin)."""
    other = _Recorder()
    endpoint = _Recorder(redirect_to=other.url)
    for server in (other, endpoint):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield endpoint, other
    for server in (other, endpoint):
        server.shutdown()
        server.server_close()


def test_a_probe_follows_no_redirect_with_the_key(
    hosts: tuple[_Recorder, _Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, other = hosts
    monkeypatch.setenv("LUDUS_KEY_UPSTREAM", "sk-upstream")
    endpoint = EndpointFactory.create(base_url=first.url, api_key_env="LUDUS_KEY_UPSTREAM")
    healthy, error = endpoint_probe(endpoint=endpoint)
    assert not healthy
    assert "redirect, not followed" in error
    assert first.seen == [("GET", "/v1/models", "Bearer sk-upstream")]
    assert other.seen == []


def test_a_stream_follows_no_redirect_with_the_key_or_the_prompt(
    hosts: tuple[_Recorder, _Recorder],
) -> None:
    first, other = hosts

    async def stream() -> None:
        async with oai.session() as http:
            payload = oai.build_payload("m", [{"role": "user", "content": "my secret plan"}], {})
            await oai.AsyncChatStream(http, first.url, payload, api_key="sk-upstream").run(
                lambda deltas: None
            )

    with pytest.raises(oai.UpstreamRedirect) as refused:
        asyncio.run(stream())
    assert refused.value.retryable  # another endpoint of the model may answer
    assert first.seen == [("POST", "/v1/chat/completions", "Bearer sk-upstream")]
    assert other.seen == []


def test_a_probe_still_sends_the_key_to_the_endpoint_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = _Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("LUDUS_KEY_UPSTREAM", "sk-upstream")
        endpoint = EndpointFactory.create(base_url=server.url, api_key_env="LUDUS_KEY_UPSTREAM")
        assert endpoint_probe(endpoint=endpoint) == (True, "")
    finally:
        server.shutdown()
        server.server_close()
    assert [auth for _, _, auth in server.seen] == ["Bearer sk-upstream"] * 2
