"""schemathesis against the researcher API's own OpenAPI schema, through the WSGI app: every
operation, with generated parameters, answers within its schema and never with a server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from arena.apitokens import token_create
from tests.collection.dataset_helpers import battle_vote
from tests.factories import ModelFactory

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
# Positive and negative data; the token is the test's own (not generated), and unknown query
# parameters are ignored as Django ignores them, not refused.
schema.config.generation.update(
    modes=list(schemathesis.GenerationMode),
    allow_extra_parameters=False,
    with_security_parameters=False,
)


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """As Django's test client does: a request must not close the test's connection, which holds
    the transaction every test runs in."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def researcher(bob: User, settings: Any) -> str:
    settings.ARENA_EXPORTS_PER_MINUTE = 0  # no limit: hypothesis calls faster than a person
    a, b = ModelFactory.create(), ModelFactory.create()
    battle_vote(a, b, "a", prompt="a question", text_a="yes", text_b="no")
    return token_create(user=bob, name="schemathesis")[1]


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_it_answers_every_operation_within_its_schema(case: Any, researcher: str, db: None) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {researcher}"})
