"""Datasets: the staff pages (datasets, freezing a version, a version's datasheet) and the
downloads researchers take away (a session or an API token, within the export rate limits)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from arena.apitokens import researcher_access
from collection import datasets, exports, review
from collection.models import Dataset, DatasetVersion, VersionStatus


@staff_member_required
@require_GET
def datasets_page(request: HttpRequest) -> HttpResponse:
    all_datasets = Dataset.objects.prefetch_related("versions")
    return render(request, "collection/datasets.html", {"datasets": all_datasets})


@staff_member_required
@require_POST
def dataset_freeze(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, id=dataset_id)
    try:
        version = datasets.dataset_version_create(dataset=dataset)
    except datasets.DatasetError as error:
        messages.error(request, str(error))
        return redirect("datasets")
    return redirect("dataset-version", version_id=version.id)


@staff_member_required
@require_GET
def version_page(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), id=version_id)
    context = {
        "version": version,
        "formats": list(exports.FORMATS),
        "revoked": datasets.version_revoked_count(version=version),
    }
    return render(request, "collection/datasets_version.html", context)


def _frozen(version_id: int) -> DatasetVersion:
    version = datasets.versions_frozen().filter(id=version_id).first()
    if version is None:
        raise Http404("No such frozen dataset version.")
    return version


def version_lines(format_name: str, version: DatasetVersion) -> Iterator[bytes]:
    rows = datasets.version_rows(version=version)
    for record in exports.records(format_name, rows):
        yield json.dumps(record, ensure_ascii=False).encode() + b"\n"


@require_GET
@researcher_access
def version_download(
    request: HttpRequest, version_id: int, export_format: str
) -> StreamingHttpResponse:
    """One format of a frozen version as JSON Lines, streamed row by row; revoked rows left out.
    The manifest travels in a header and at manifest.json."""
    if export_format not in exports.FORMATS:
        raise Http404("No such format.")
    version = _frozen(version_id)
    response = StreamingHttpResponse(
        version_lines(export_format, version), content_type="application/x-ndjson; charset=utf-8"
    )
    name = f"{version.dataset.name}-v{version.number}-{export_format}"
    response["Content-Disposition"] = f'attachment; filename="{name}.jsonl"'
    response["X-Content-SHA256"] = version.content_hash
    response["Link"] = f'<{request.path.rsplit("/", 1)[0]}/manifest.json>; rel="describedby"'
    return response


@require_GET
@researcher_access
def version_manifest(request: HttpRequest, version_id: int) -> JsonResponse:
    return JsonResponse(version_manifest_data(_frozen(version_id)))


def version_manifest_data(version: DatasetVersion) -> dict[str, object]:
    return {
        "dataset": version.dataset.name,
        "version": version.number,
        "status": version.status,
        "manifest": version.manifest,
        "report": version.report,
        "rows": version.row_count,
        "rows_revoked": datasets.version_revoked_count(version=version),
        "content_hash": version.content_hash,
        "frozen_at": version.frozen_at.isoformat() if version.frozen_at else None,
        "formats": list(exports.FORMATS),
    }


@staff_member_required
@require_GET
def version_datasheet(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion, id=version_id, status=VersionStatus.DONE)
    return HttpResponse(version.datasheet, content_type="text/markdown; charset=utf-8")


@staff_member_required
@require_GET
def review_page(request: HttpRequest) -> HttpResponse:
    review.review_queue_sync()
    context = {"pending": review.review_pending(), "decided": review.review_decided()}
    return render(request, "collection/datasets_review.html", context)


@staff_member_required
@require_POST
def review_decide(request: HttpRequest, item_id: int) -> HttpResponse:
    try:
        review.review_decide(
            item_id=item_id,
            user=request.user,  # type: ignore[arg-type]
            status=request.POST.get("status", ""),
            note=request.POST.get("note", ""),
        )
    except review.ReviewError as error:
        messages.error(request, str(error))
    return redirect("datasets-review")
