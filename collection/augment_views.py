"""Staff actions on a dataset version beside its page: resume an interrupted freeze, augment a
frozen version through the serving pool, download an augmentation's synthetic rows."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from collection import augment, roles, shards
from collection.dataset_views import staff_permission
from collection.models import Augmentation, AugmentationStatus, DatasetVersion, VersionStatus


@staff_permission(roles.VERSION_FREEZE)
@require_POST
def version_resume(request: HttpRequest, version_id: int) -> HttpResponse:
    """Send the freeze to the pipeline workers again: they go on from the shards already done."""
    version = get_object_or_404(DatasetVersion, id=version_id)
    if version.status == VersionStatus.DONE:
        messages.info(request, "This version is frozen already.")
    else:
        transaction.on_commit(lambda: shards.freeze_enqueue(version_id=version.id))
        messages.success(request, "Resumed: the pipeline workers go on from the shards done.")
    return redirect("dataset-version", version_id=version.id)


class AugmentForm(forms.Form):
    kinds = forms.MultipleChoiceField(choices=[(k, k) for k in augment.KINDS])
    paraphrase_model = forms.CharField(max_length=100, required=False)
    reply_models = forms.CharField(max_length=500, required=False, help_text="comma-separated")
    judge_model = forms.CharField(max_length=100, required=False)
    limit = forms.IntegerField(min_value=1, max_value=100_000, initial=100)


@staff_permission(roles.VERSION_FREEZE)
@require_POST
def version_augment(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion, id=version_id)
    form = AugmentForm(request.POST)
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain")
    data = form.cleaned_data
    try:
        job = augment.augmentation_create(
            version=version,
            kinds=data["kinds"],
            paraphrase_model=data["paraphrase_model"].strip(),
            reply_models=[n.strip() for n in data["reply_models"].split(",") if n.strip()],
            judge_model=data["judge_model"].strip(),
            limit=data["limit"],
        )
    except augment.AugmentationError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    messages.success(request, f"Augmentation {job.id} sent to the pipeline workers.")
    return redirect("dataset-version", version_id=version.id)


def _lines(job: Augmentation) -> Iterator[bytes]:
    for row in augment.augmentation_rows(augmentation=job):
        yield json.dumps(row, ensure_ascii=False).encode() + b"\n"


@staff_permission(roles.DATASETS_VIEW)
@require_GET
def augmentation_download(
    request: HttpRequest, version_id: int, job_id: int
) -> StreamingHttpResponse:
    job = get_object_or_404(
        Augmentation, id=job_id, version_id=version_id, status=AugmentationStatus.DONE
    )
    response = StreamingHttpResponse(_lines(job), content_type="application/x-ndjson")
    name = f"augmentation-{job.id}-of-version-{version_id}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
