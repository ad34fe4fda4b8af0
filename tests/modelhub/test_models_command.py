"""`manage.py models load/list/enable/disable` as an operator uses it."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from modelhub.models import Model

pytestmark = pytest.mark.django_db

CONFIG = """
models:
  - name: llama-8b
    display_name: Llama 8B
    organization: Meta
    license: llama3
    engine: vllm
    modalities: [text]
    sampling_weight: 2.0
    max_tokens: 256
    endpoints:
      - base_url: http://gpu-1:8000/v1
      - base_url: http://gpu-2:8000/v1
  - name: gpt-x
    engine: openai
    modalities: [text, image]
    endpoints:
      - base_url: https://api.example.com/v1
        api_key_env: LUDUS_KEY_EXAMPLE
"""


def _run(*args: str) -> str:
    out = StringIO()
    call_command("models", *args, stdout=out)
    return out.getvalue()


def test_it_loads_lists_and_toggles_models(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(CONFIG)
    assert "loaded 2 model(s)" in _run("load", str(path))
    rows = {row["name"]: row for row in json.loads(_run("list", "--format", "json"))}
    assert rows["llama-8b"]["engine"] == "vllm"
    assert rows["llama-8b"]["endpoints"] == ["http://gpu-1:8000/v1", "http://gpu-2:8000/v1"]
    assert rows["gpt-x"]["modalities"] == ["text", "image"]
    assert Model.objects.get(name="gpt-x").endpoints.get().api_key_env == "LUDUS_KEY_EXAMPLE"
    assert "llama-8b" in _run("list")
    _run("disable", "llama-8b")
    assert Model.objects.get(name="llama-8b").enabled is False
    _run("enable", "llama-8b")
    assert Model.objects.get(name="llama-8b").enabled is True


def test_it_updates_on_reload_and_disables_dropped_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(
        json.dumps(
            [
                {
                    "name": "m1",
                    "endpoints": [{"base_url": "http://a/v1"}, {"base_url": "http://b/v1"}],
                }
            ]
        )
    )
    _run("load", str(path))
    path.write_text(
        json.dumps(
            [{"name": "m1", "sampling_weight": 0.5, "endpoints": [{"base_url": "http://b/v1"}]}]
        )
    )
    _run("load", str(path))
    model = Model.objects.get(name="m1")
    assert model.sampling_weight == 0.5
    assert {(e.base_url, e.enabled) for e in model.endpoints.all()} == {
        ("http://a/v1", False),
        ("http://b/v1", True),
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[{"name": "m", "endpoints": [{"base_url": "http://a/v1", "api_key": "sk-123"}]}]',
            "api_key_env",
        ),
        ('[{"name": "m", "engine": "bogus"}]', "engine"),
        ('[{"name": "m", "colour": "red"}]', "unknown fields"),
        ('[{"display_name": "no name"}]', "needs a name"),
        ("models: [unclosed", "not valid YAML"),
    ],
)
def test_it_refuses_bad_files_without_storing_anything(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    before = list(Model.objects.order_by("id").values_list("name", "updated_at"))
    with pytest.raises(CommandError, match=message):
        _run("load", str(path))
    assert list(Model.objects.order_by("id").values_list("name", "updated_at")) == before


def test_it_names_an_unknown_model() -> None:
    with pytest.raises(CommandError, match="no model named"):
        _run("enable", "ghost")
