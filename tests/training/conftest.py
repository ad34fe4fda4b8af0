"""Fine-tuning fixtures: two zoo models in a models directory of the test's own, and a frozen
dataset version of battles between them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from collection import datasets, tasks
from collection.models import Dataset, DatasetVersion, VersionStatus
from modelhub.models import Model
from modelhub.services.registry import models_load
from modelhub.zoo.testing import cached_quick_zoo
from tests.collection.dataset_helpers import battle_vote

BASE, JUDGE = "zoo-llama-xs", "zoo-llama-s"


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    torch.set_num_threads(1)
    return cached_quick_zoo()


@pytest.fixture
def hub(zoo_dir: Path, tmp_path: Path, settings: Any) -> dict[str, Model]:
    """The base and the judge as hub models served by the local engine from a models directory
    (and a data directory) of this test's own."""
    settings.MODELS_DIR = tmp_path / "models"
    settings.DATA_DIR = tmp_path / "data"
    for name in (BASE, JUDGE):
        shutil.copytree(zoo_dir / name, settings.MODELS_DIR / name)
    loaded = models_load(
        entries=[
            {
                "name": name,
                "engine": "local",
                "path": name,
                "license": "Apache-2.0",
                "endpoints": [{"base_url": settings.LOCAL_ENGINE_URL}],
            }
            for name in (BASE, JUDGE)
        ]
    )
    return {model.name: model for model in loaded}


FACTS = [
    ("what is two plus two?", "two plus two is four.", "i like trains."),
    ("what colour is the sky?", "the sky is blue.", "the sky is a fish."),
    ("name a fruit.", "an apple is a fruit.", "no."),
    ("what is three plus one?", "three plus one is four.", "it is nine."),
    ("say hello.", "hello! how can i help you today?", "goodbye."),
    ("what do cats say?", "cats say meow.", "cats say moo."),
    ("what is one plus one?", "one plus one is two.", "one plus one is eleven."),
    ("what is water made of?", "water is made of hydrogen and oxygen.", "water is made of sand."),
    ("name a colour.", "red is a colour.", "a colour is a number."),
    ("what do dogs say?", "dogs say woof.", "dogs say meow."),
    ("what is five minus two?", "five minus two is three.", "five minus two is seven."),
    ("where do fish live?", "fish live in water.", "fish live on the moon."),
]


@pytest.fixture
def version(hub: dict[str, Model], django_capture_on_commit_callbacks: Any) -> DatasetVersion:
    """A frozen version of battles between the two hub models, the better answer winning."""
    a, b = hub[BASE], hub[JUDGE]
    for index, (prompt, good, bad) in enumerate(FACTS):
        side = "a" if index % 2 == 0 else "b"
        text_a, text_b = (good, bad) if side == "a" else (bad, good)
        battle_vote(a, b, side, prompt=prompt, text_a=text_a, text_b=text_b)
    dataset = Dataset.objects.create(name="zoo-facts", sources=["battles"], steps=[])
    with django_capture_on_commit_callbacks(execute=False):
        frozen = datasets.dataset_version_create(dataset=dataset)
    tasks.dataset_freeze(frozen.id)
    frozen.refresh_from_db()
    assert frozen.status == VersionStatus.DONE, frozen.error
    return frozen
