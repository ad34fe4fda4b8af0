"""Registering the zoo in the model hub, and the build_demo_models command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from modelhub.models import Endpoint, Model
from modelhub.zoo_registry import zoo_models_register

pytestmark = pytest.mark.django_db


def test_it_registers_every_zoo_model_with_a_local_endpoint(zoo_dir: Path) -> None:
    rows = zoo_models_register(models_dir=zoo_dir, base_url="http://127.0.0.1:8100/v1")
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    assert {m.name for m in rows} == {e["name"] for e in manifest["models"]}
    for name, pattern in (("zoo-llava-s", "zoo llava s"), ("zoo-llava-m", "zoo llava m")):
        llava = Model.objects.get(name=name)
        assert llava.engine == "local"
        assert llava.supports_images
        assert llava.organization == "Ludus Zoo"
        assert pattern in llava.identity_patterns
        endpoints = Endpoint.objects.filter(model=llava, base_url="http://127.0.0.1:8100/v1")
        assert endpoints.count() == 1
    losses = {m.name: m.heldout_loss for m in Model.objects.filter(name__startswith="zoo-")}
    assert losses == {e["name"]: e["heldout_loss"] for e in manifest["models"]}
    tools = Model.objects.get(name="zoo-llama-tools")  # trained to call tools, through vLLM too
    assert (tools.tools, tools.tool_call_parser) == (["calculator", "search"], "hermes")
    assert Model.objects.get(name="zoo-llava-s").tools == []


def test_it_keeps_the_tools_an_operator_chose_when_the_zoo_is_registered_again(
    zoo_dir: Path,
) -> None:
    zoo_models_register(models_dir=zoo_dir)
    Model.objects.filter(name="zoo-llama-tools").update(tools=["calculator"])
    zoo_models_register(models_dir=zoo_dir)
    assert Model.objects.get(name="zoo-llama-tools").tools == ["calculator"]


def test_it_updates_rows_when_the_zoo_is_rebuilt(zoo_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    copy.mkdir()
    shutil.copy(zoo_dir / "manifest.json", copy / "manifest.json")
    zoo_models_register(models_dir=copy, base_url="http://e/v1")
    Model.objects.filter(name="zoo-llama-s").update(sampling_weight=3.0)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["models"][1]["heldout_loss"] = 1.2345
    (copy / "manifest.json").write_text(json.dumps(manifest))
    zoo_models_register(models_dir=copy, base_url="http://e/v1")
    row = Model.objects.get(name=manifest["models"][1]["name"])
    assert row.heldout_loss == 1.2345
    assert Model.objects.get(name="zoo-llama-s").sampling_weight == 3.0
    assert Model.objects.filter(name__startswith="zoo-").count() == len(manifest["models"])
    assert Endpoint.objects.filter(base_url="http://e/v1").count() == len(manifest["models"])


def test_it_registers_an_existing_zoo_without_rebuilding(zoo_dir: Path) -> None:
    mtime = (zoo_dir / "manifest.json").stat().st_mtime
    with override_settings(MODELS_DIR=zoo_dir, LOCAL_ENGINE_URL="http://127.0.0.1:9/v1"):
        call_command("build_demo_models", "--if-missing")
    assert (zoo_dir / "manifest.json").stat().st_mtime == mtime
    assert Model.objects.filter(engine="local", heldout_loss__isnull=False).count() >= 5


def test_it_rebuilds_a_zoo_an_older_plan_built(zoo_dir: Path, tmp_path: Path) -> None:
    """A zoo from before a model was added is not taken as built: --if-missing rebuilds it, so an
    existing install gets the new model on its next `make run`."""
    from modelhub.zoo_registry import zoo_is_built

    assert zoo_is_built(models_dir=zoo_dir)
    copy = tmp_path / "models"
    copy.mkdir()
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    manifest["plan"]["vision_models"] = manifest["plan"]["vision_models"][:1]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert not zoo_is_built(models_dir=copy)
    assert not zoo_is_built(models_dir=tmp_path / "nothing-here")
