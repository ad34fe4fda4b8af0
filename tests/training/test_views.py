"""The staff pages: launch, watch (the loss curve and the polled progress panel), cancel,
resume and promote; bad launches and disallowed changes answer 4xx and change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from collection.models import DatasetVersion, FinetuneJob, JobState
from collection.training import services
from collection.training.tasks import finetune_run
from modelhub.models import Model
from tests.training.conftest import BASE, JUDGE

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(alice: User) -> Client:
    User.objects.filter(id=alice.id).update(is_superuser=True)
    client = Client()
    client.force_login(alice)
    return client


def _form(version: DatasetVersion, **fields: Any) -> dict[str, Any]:
    return {
        "version": version.id,
        "method": "sft",
        "base_model": BASE,
        "judge_model": JUDGE,
        "hyperparameters": json.dumps({"max_steps": 3, "save_steps": 2, "test_fraction": 0.25}),
        "seed": 1,
    } | fields


def test_it_lets_staff_launch_watch_and_promote_a_job(
    staff: Client,
    version: DatasetVersion,
    hub: dict[str, Model],
    django_capture_on_commit_callbacks: Any,
) -> None:
    page = staff.get("/training/")
    assert page.status_code == 200 and str(version) in page.content.decode()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        launched = staff.post("/training/launch/", _form(version))
    job = FinetuneJob.objects.get()
    assert launched.status_code == 302 and launched["Location"] == f"/training/{job.id}/"
    assert len(callbacks) == 1
    waiting = staff.get(f"/training/{job.id}/", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in waiting.content.decode()  # the panel polls while active

    finetune_run(job.id)
    body = staff.get(f"/training/{job.id}/").content.decode()
    assert 'id="loss-curve"' in body and 'data-points="3"' in body
    assert "Held-out loss after" in body and 'id="verdicts"' in body
    assert 'hx-trigger="every 2s"' not in body  # done: it stops polling

    promoted = staff.post(f"/training/{job.id}/promote/")
    assert promoted.status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.PROMOTED
    assert f"{BASE}-ft{job.id}" in staff.get(f"/training/{job.id}/").content.decode()
    again = staff.post(f"/training/{job.id}/promote/")
    assert again.status_code == 409 and "trained and evaluated" in again.content.decode()


def test_it_cancels_and_resumes_from_the_page(
    staff: Client,
    version: DatasetVersion,
    hub: dict[str, Model],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        staff.post("/training/launch/", _form(version))
        job = FinetuneJob.objects.get()
        assert staff.post(f"/training/{job.id}/cancel/").status_code == 302
        assert FinetuneJob.objects.get().state == JobState.CANCELLED
        assert staff.post(f"/training/{job.id}/cancel/").status_code == 409
        assert staff.post(f"/training/{job.id}/resume/").status_code == 302
    assert FinetuneJob.objects.get().state == JobState.QUEUED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hyperparameters": "{not json"}, "Not JSON"),
        ({"hyperparameters": '{"epochs": 3}'}, "unknown hyperparameter epochs"),
        ({"hyperparameters": "[1]"}, "Write an object"),
        ({"method": "ppo"}, "Select a valid choice"),
        ({"base_model": "no-such-model"}, "Select a valid choice"),
        ({"seed": "-1"}, "greater than or equal to 0"),
    ],
)
def test_it_refuses_a_bad_launch_with_400_and_stores_nothing(
    staff: Client,
    version: DatasetVersion,
    hub: dict[str, Model],
    fields: dict[str, Any],
    message: str,
) -> None:
    response = staff.post("/training/launch/", _form(version, **fields))
    assert response.status_code == 400 and message in response.content.decode()
    assert not FinetuneJob.objects.exists()


def test_it_forbids_staff_without_the_job_permissions(
    alice: User, version: DatasetVersion, hub: dict[str, Model]
) -> None:
    client = Client()
    client.force_login(alice)  # staff, but no role that holds the fine-tuning permissions
    assert client.get("/training/").status_code == 403
    assert client.post("/training/launch/", _form(version)).status_code == 403
    assert not FinetuneJob.objects.exists()


def test_it_lets_staff_resume_a_job_whose_worker_died(
    staff: Client,
    version: DatasetVersion,
    hub: dict[str, Model],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        staff.post("/training/launch/", _form(version))
    job = FinetuneJob.objects.get()
    services.job_run(job_id=job.id, stop_at_step=2)  # its worker died after step 2's checkpoint
    assert "Resume from the last checkpoint" in staff.get(f"/training/{job.id}/").content.decode()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert staff.post(f"/training/{job.id}/resume/").status_code == 302
    assert len(callbacks) == 1
    finetune_run(job.id)
    job.refresh_from_db()
    assert job.state == JobState.DONE and job.resumed_from_step == 2
