"""Promotion of a LoRA job whose base vLLM serves: the new model is the base plus the adapter, on
the base's endpoints, loaded into their running servers at once (here a stand-in for vLLM's
runtime LoRA route, which records what it was sent; tests/vllm does it with a real server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings

from collection.models import DatasetVersion, JobState
from collection.training import services
from collection.training.tasks import finetune_run
from modelhub.models import Model
from modelhub.selectors import models_available
from modelhub.services.registry import models_load
from modelhub.supervisor import spec_from_model, vllm_command
from tests.training.conftest import BASE
from tests.training.test_jobs import _launch

pytestmark = pytest.mark.django_db


class _VllmRoutes(ThreadingHTTPServer):
    """Records each POST (path, JSON body); answers `status` with vLLM's texts."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, dict[str, Any]]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _VllmRoutes

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.posts.append((self.path, body))
        ok = self.server.status < 300
        text = (
            f"Success: LoRA adapter '{body.get('lora_name')}' added successfully."
            if ok
            else json.dumps({"detail": "Not Found"})
        )
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(text.encode())))
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args: Any) -> None:
        pass


def _server(status: int) -> Iterator[_VllmRoutes]:
    server = _VllmRoutes(status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def vllm() -> Iterator[_VllmRoutes]:
    yield from _server(200)


@pytest.fixture
def vllm_without_lora() -> Iterator[_VllmRoutes]:
    """A server started without runtime LoRA updating: the route does not exist."""
    yield from _server(404)


def _serve_base_with_vllm(hub: dict[str, Model], url: str) -> Model:
    (base,) = models_load(
        entries=[{"name": BASE, "engine": "vllm", "path": BASE, "endpoints": [{"base_url": url}]}]
    )
    assert base == hub[BASE]
    return base


def test_it_promotes_a_lora_job_on_a_vllm_base_as_an_adapter_its_servers_load(
    version: DatasetVersion,
    hub: dict[str, Model],
    vllm: _VllmRoutes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    base = _serve_base_with_vllm(hub, vllm.url)
    job = _launch(version, base, django_capture_on_commit_callbacks, lora=True, lora_r=4)
    finetune_run(job.id)

    services.job_promote(job_id=job.id)

    job.refresh_from_db()
    model = job.promoted_model
    assert job.state == JobState.PROMOTED and model is not None
    name = services.promoted_name(job)
    assert (model.name, model.upstream_name, model.engine) == (name, name, "vllm")
    assert model.lora_base == base and model.generation_queue == base.generation_queue
    assert [(e.base_url, e.healthy) for e in model.endpoints.all()] == [(vllm.url, True)]
    assert model in models_available()
    # The adapter alone, with the job's card, not the merged model.
    target = settings.MODELS_DIR / name
    assert model.path == name
    assert json.loads((target / "adapter_config.json").read_text())["r"] == 4
    assert (target / "adapter_model.safetensors").exists()
    assert not (target / "config.json").exists()
    assert "fine-tuned" in (target / "README.md").read_text().lower()
    assert vllm.posts == [
        (
            "/v1/load_lora_adapter",
            {"lora_name": name, "lora_path": str(target.resolve()), "load_inplace": True},
        )
    ]
    # A restart of the base's server serves it too.
    argv = vllm_command(spec_from_model(base, port=8123))
    assert argv[argv.index("--lora-modules") + 1] == f"{name}={target}"
    assert argv[argv.index("--max-lora-rank") + 1] == "8"


def test_it_promotes_an_adapter_a_server_refuses_and_marks_its_endpoint_until_a_restart(
    version: DatasetVersion,
    hub: dict[str, Model],
    vllm_without_lora: _VllmRoutes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    base = _serve_base_with_vllm(hub, vllm_without_lora.url)
    job = _launch(version, base, django_capture_on_commit_callbacks, lora=True)
    finetune_run(job.id)

    services.job_promote(job_id=job.id)

    job.refresh_from_db()
    model = job.promoted_model
    assert job.state == JobState.PROMOTED and model is not None and model.lora_base == base
    (endpoint,) = model.endpoints.all()
    assert not endpoint.healthy
    assert "HTTP 404" in endpoint.last_error and "restarts" in endpoint.last_error
    assert model not in models_available()
    assert base.endpoints.get(enabled=True).healthy  # the base itself answers as before
    assert [path for path, _ in vllm_without_lora.posts] == ["/v1/load_lora_adapter"]


def test_it_promotes_a_full_fine_tune_of_a_vllm_base_to_the_local_engine(
    version: DatasetVersion,
    hub: dict[str, Model],
    vllm: _VllmRoutes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    base = _serve_base_with_vllm(hub, vllm.url)
    job = _launch(version, base, django_capture_on_commit_callbacks)
    finetune_run(job.id)

    services.job_promote(job_id=job.id)

    job.refresh_from_db()
    model = job.promoted_model
    assert model is not None and (model.engine, model.lora_base) == ("local", None)
    assert [e.base_url for e in model.endpoints.all()] == [settings.LOCAL_ENGINE_URL]
    assert (settings.MODELS_DIR / model.name / "config.json").exists()
    assert vllm.posts == []
