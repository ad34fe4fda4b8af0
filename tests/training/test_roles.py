"""Fine-tuning in the staff roles: admins launch, resume, cancel and promote jobs; curators
watch them but launch nothing; staff without a role see no job."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from collection.models import DatasetVersion, FinetuneJob, JobState
from collection.training import services
from modelhub.models import Model
from tests.factories import UserFactory
from tests.training.conftest import BASE
from tests.training.test_views import _form

pytestmark = pytest.mark.django_db


def _member(role: str | None) -> Client:
    user: User = UserFactory.create(is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def test_it_lets_admins_launch_and_cancel_jobs_and_curators_only_watch(
    version: DatasetVersion, hub: dict[str, Model], django_capture_on_commit_callbacks: Any
) -> None:
    admin, curator, bare = _member("admin"), _member("curator"), _member(None)

    with django_capture_on_commit_callbacks(execute=False):
        refused = curator.post("/training/launch/", _form(version))
    assert refused.status_code == 403 and not FinetuneJob.objects.exists()
    assert bare.get("/training/").status_code == 403

    with django_capture_on_commit_callbacks(execute=False):
        launched = admin.post("/training/launch/", _form(version))
    job = FinetuneJob.objects.get()
    assert launched.status_code == 302 and job.base_model == hub[BASE]

    watched = curator.get(f"/training/{job.id}/")
    assert watched.status_code == 200 and "Cancel</button>" not in watched.content.decode()
    assert "launch/" not in curator.get("/training/").content.decode()
    assert curator.post(f"/training/{job.id}/cancel/").status_code == 403
    assert 'action="/training/' in admin.get(f"/training/{job.id}/").content.decode()
    assert admin.post(f"/training/{job.id}/cancel/").status_code == 302
    assert FinetuneJob.objects.get().state == JobState.CANCELLED
    with pytest.raises(services.JobError):
        services.job_cancel(job_id=job.id)
