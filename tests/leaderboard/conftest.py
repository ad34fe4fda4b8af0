from __future__ import annotations

from typing import cast

import pytest

from modelhub.models import Model
from tests.factories import EndpointFactory, ModelFactory


@pytest.fixture
def board_models(db: None) -> list[Model]:
    """Four models, each with an endpoint; the last one is deprecated."""
    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    models = [
        ModelFactory(name="alpha-7b", display_name="Alpha 7B", organization="Alphacorp",
                     license="apache-2.0"),
        ModelFactory(name="beta-chat", display_name="Beta Chat", organization="Betalabs",
                     license="mit"),
        ModelFactory(name="gamma-1", display_name="Gamma One", organization="Alphacorp"),
        ModelFactory(name="old-timer", display_name="Old Timer", organization="Retro",
                     deprecated=True),
    ]  # fmt: skip
    for model in models:
        EndpointFactory(model=model)
    return cast(list[Model], models)
