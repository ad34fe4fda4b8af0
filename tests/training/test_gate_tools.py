"""The evaluation gate's function-calling check: for a base with tools enabled, the new model and
its base answer the same BFCL-style cases through the local engine, and the job's page shows both
scores; a base without tools skips it and says why."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from collection.models import DatasetVersion, JobState
from collection.training.tasks import finetune_run
from modelhub.models import Model
from modelhub.services.registry import models_load
from modelhub.zoo import tooluse
from tests.training.conftest import BASE
from tests.training.test_jobs import _launch

pytestmark = pytest.mark.django_db

TOOLS = "zoo-llama-tools"


def _page(user: User, job_id: int) -> str:
    User.objects.filter(id=user.id).update(is_superuser=True)
    client = Client()
    client.force_login(user)
    return client.get(f"/training/{job_id}/").content.decode()


def test_it_checks_function_calling_of_the_new_model_beside_its_base(
    version: DatasetVersion,
    hub: dict[str, Model],
    zoo_dir: Path,
    alice: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    shutil.copytree(zoo_dir / TOOLS, settings.MODELS_DIR / TOOLS)
    shutil.copytree(zoo_dir / "evals", settings.MODELS_DIR / "evals")
    (base,) = models_load(
        entries=[{"name": TOOLS, "engine": "local", "path": TOOLS, "tools": ["calculator"]}]
    )
    job = _launch(
        version, base, django_capture_on_commit_callbacks, max_steps=2, function_calling_cases=6
    )

    finetune_run(job.id)

    job.refresh_from_db()
    assert job.state == JobState.DONE, job.error
    check = job.metrics["function_calling"]
    assert check["cases"] == 6 and 0 <= check["new"] <= 1 and 0 <= check["base"] <= 1
    assert set(check["base_by_category"]) <= {"arithmetic", "lookup"}
    first = tooluse.read_cases(settings.MODELS_DIR / tooluse.TEST_SET)[:6]
    assert set(check["new_by_category"]) == {case["category"] for case in first}
    page = _page(alice, job.id)
    assert 'data-testid="function-calling"' in page
    assert f"base {round(check['base'] * 100)}%" in page and "on 6 cases" in page


def test_it_skips_function_calling_for_a_base_without_tools(
    version: DatasetVersion,
    hub: dict[str, Model],
    alice: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = _launch(version, hub[BASE], django_capture_on_commit_callbacks, max_steps=2)

    finetune_run(job.id)

    job.refresh_from_db()
    assert "function_calling" not in job.metrics
    reason = job.metrics["function_calling_skipped"]
    assert "no tools enabled" in reason
    assert f"skipped: {reason}" in _page(alice, job.id)
