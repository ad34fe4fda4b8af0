"""LoRA adapters in the registry: a vLLM model names its vLLM base with lora_base."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from modelhub.models import Model
from modelhub.services import ModelConfigError, models_load

pytestmark = pytest.mark.django_db

ENDPOINTS = [{"base_url": "http://gpu-1:8000/v1"}]


def test_it_registers_an_adapter_on_its_vllm_base() -> None:
    base, adapter = models_load(
        entries=[
            {"name": "base", "engine": "vllm", "path": "base", "endpoints": ENDPOINTS},
            {"name": "base-ft1", "engine": "vllm", "lora_base": "base", "endpoints": ENDPOINTS},
        ]
    )
    assert adapter.lora_base == base
    assert list(base.lora_adapters.all()) == [adapter]
    (again,) = models_load(entries=[{"name": "base-ft1", "lora_base": ""}])
    assert again.lora_base is None


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ([{"name": "a", "engine": "vllm", "lora_base": "nobody"}], "no base model named 'nobody'"),
        (
            [{"name": "b", "engine": "local"}, {"name": "a", "engine": "vllm", "lora_base": "b"}],
            "both served by vLLM",
        ),
        (
            [{"name": "b", "engine": "vllm"}, {"name": "a", "engine": "openai", "lora_base": "b"}],
            "both served by vLLM",
        ),
        (
            [
                {"name": "b", "engine": "vllm"},
                {"name": "a", "engine": "vllm", "lora_base": "b"},
                {"name": "c", "engine": "vllm", "lora_base": "a"},
            ],
            "is itself an adapter",
        ),
    ],
)
def test_it_refuses_an_adapter_without_a_vllm_base(
    entries: list[dict[str, str]], error: str
) -> None:
    with pytest.raises(ModelConfigError, match=error):
        models_load(entries=entries)
    assert not Model.objects.exists()  # all or nothing


def test_the_admin_shows_an_adapters_base_but_leaves_setting_it_to_the_registry(
    admin_client: Client,
) -> None:
    local = Model.objects.create(name="local-one", engine="local", path="local-one")
    page = admin_client.get(reverse("admin:modelhub_model_change", args=[local.id]))
    assert page.status_code == 200
    assert 'name="lora_base"' not in page.content.decode()
    assert "Lora base" in page.content.decode()
