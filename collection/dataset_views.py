"""Datasets: the staff pages (review queue, datasets, freezing and deleting a version, a version's
datasheet) and the downloads researchers take away (a session or an API token, within the export
rate limits). Staff pages check the curation roles' permissions (collection.roles)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from arena.apitokens import researcher_access
from collection import datasets, exports, review, roles, shards
from collection.models import Dataset, DatasetVersion, ReviewKind, ReviewStatus, VersionStatus

PAGE_ITEMS = 50
FILE_TYPES = {
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def staff_permission(permission: str) -> Callable[..., Any]:
    """Staff only (others go to the admin's login), and 403 for staff without ``permission``."""

    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.has_perm(permission):
                raise PermissionDenied(f"Your role lacks {permission}.")
            return view(request, *args, **kwargs)

        return staff_member_required(wrapped)  # type: ignore[no-any-return]

    return decorator


@staff_permission(roles.DATASETS_VIEW)
@require_GET
def datasets_page(request: HttpRequest) -> HttpResponse:
    all_datasets = Dataset.objects.prefetch_related("versions")
    context = {
        "datasets": all_datasets,
        "can_freeze": request.user.has_perm(roles.VERSION_FREEZE),
    }
    return render(request, "collection/datasets.html", context)


@staff_permission(roles.DATASETS_VIEW)
@require_GET
def dataset_preview(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, id=dataset_id)
    try:
        preview = datasets.dataset_preview(dataset=dataset)
    except datasets.DatasetError as error:
        messages.error(request, str(error))
        return redirect("datasets")
    context = {
        "dataset": dataset,
        "preview": preview,
        "can_freeze": request.user.has_perm(roles.VERSION_FREEZE),
    }
    return render(request, "collection/dataset_preview.html", context)


@staff_permission(roles.VERSION_FREEZE)
@require_POST
def dataset_freeze(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, id=dataset_id)
    try:
        version = datasets.dataset_version_create(dataset=dataset)
    except datasets.DatasetError as error:
        messages.error(request, str(error))
        return redirect("datasets")
    return redirect("dataset-version", version_id=version.id)


@staff_permission(roles.DATASETS_VIEW)
@require_GET
def version_page(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), id=version_id)
    context = {
        "version": version,
        "formats": list(exports.FORMATS),
        "revoked": datasets.version_revoked_count(version=version),
        "can_delete": request.user.has_perm(roles.VERSION_DELETE),
        "progress": shards.run_progress(version=version),
    }
    if request.htmx and version.status == VersionStatus.DONE:  # type: ignore[attr-defined]
        # The polling progress panel: the frozen version's page replaces it whole.
        return HttpResponseClientRefresh()
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "collection/datasets_version.html#progress", context)
    return render(request, "collection/datasets_version.html", context)


@staff_permission(roles.VERSION_DELETE)
@require_POST
def version_delete(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), id=version_id)
    try:
        datasets.dataset_version_delete(version=version)
    except datasets.DatasetError as error:
        messages.error(request, str(error))
        return redirect("dataset-version", version_id=version_id)
    messages.success(request, f"{version} deleted.")
    return redirect("datasets")


def _frozen(version_id: int) -> DatasetVersion:
    version = datasets.versions_frozen().filter(id=version_id).first()
    if version is None:
        raise Http404("No such frozen dataset version.")
    return version


def version_lines(format_name: str, version: DatasetVersion) -> Iterator[bytes]:
    rows = datasets.version_rows(version=version)
    for record in exports.records(format_name, rows):
        yield json.dumps(record, ensure_ascii=False).encode() + b"\n"


def version_file(format_name: str, file_type: str, version: DatasetVersion) -> Iterator[bytes]:
    """One format of a frozen version as JSON Lines or Parquet (the manifest in its metadata),
    streamed with flat memory; revoked rows left out."""
    if file_type == "parquet":
        rows = datasets.version_rows(version=version)
        return exports.parquet_chunks(format_name, rows, manifest=version_manifest_data(version))
    return version_lines(format_name, version)


@require_GET
@researcher_access
def version_download(
    request: HttpRequest, version_id: int, export_format: str, file_type: str = "jsonl"
) -> StreamingHttpResponse:
    """One format of a frozen version as JSON Lines or Parquet, streamed row group by row group;
    revoked rows left out. The manifest travels in a Link header and at manifest.json (and in a
    Parquet file's metadata)."""
    if export_format not in exports.FORMATS or file_type not in FILE_TYPES:
        raise Http404("No such format.")
    version = _frozen(version_id)
    response = StreamingHttpResponse(
        version_file(export_format, file_type, version), content_type=FILE_TYPES[file_type]
    )
    name = f"{version.dataset.name}-v{version.number}-{export_format}"
    response["Content-Disposition"] = f'attachment; filename="{name}.{file_type}"'
    response["X-Content-SHA256"] = version.content_hash
    response["Link"] = f'<{reverse("dataset-manifest", args=[version.id])}>; rel="describedby"'
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


@staff_permission(roles.DATASETS_VIEW)
@require_GET
def version_datasheet(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion, id=version_id, status=VersionStatus.DONE)
    return HttpResponse(version.datasheet, content_type="text/markdown; charset=utf-8")


# -- the review queue -------------------------------------------------------------------------


def _queue_url(params: dict[str, str]) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return reverse("datasets-review") + (f"?{query}" if query else "")


def _posted_filter(request: HttpRequest) -> dict[str, str]:
    """The queue's filter as a form posted it along (``filter_status`` and the rest)."""
    return review.filter_params(
        {key: request.POST.get(f"filter_{key}", "") for key in review.FILTER_KEYS}
    )


def _back(request: HttpRequest) -> HttpResponse:
    """To the queue as the curator was filtering it."""
    return redirect(_queue_url(_posted_filter(request)))


def _review_render(request: HttpRequest, params: dict[str, str], status: int = 200) -> HttpResponse:
    review.review_queue_sync()
    matching = review.review_items(params=params)
    # A page of items, each read with its battle's transcript (one query each): the oldest first.
    items = list(matching[:PAGE_ITEMS])
    context = {
        "items": [(item, review.review_transcript(item=item)) for item in items],
        "total": matching.count(),
        "params": params,
        "statuses": [("", "Waiting"), *[(s.value, s.label) for s in ReviewStatus], ("all", "All")],
        "kinds": ReviewKind.choices,
        "filters": review.review_filters(user=request.user),  # type: ignore[arg-type]
        "can_review": request.user.has_perm(roles.REVIEW),
        "decided": review.review_decided(),
    }
    return render(request, "collection/datasets_review.html", context, status=status)


def _refuse(request: HttpRequest, error: Exception) -> HttpResponse:
    """The queue again, as it was filtered, with what was wrong (400; nothing changed)."""
    messages.error(request, str(error))
    return _review_render(request, _posted_filter(request), status=400)


@staff_permission(roles.REVIEW_VIEW)
@require_GET
def review_page(request: HttpRequest) -> HttpResponse:
    return _review_render(request, review.filter_params(request.GET.dict()))


@staff_permission(roles.REVIEW)
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
        return _refuse(request, error)
    return _back(request)


@staff_permission(roles.REVIEW)
@require_POST
def review_bulk(request: HttpRequest) -> HttpResponse:
    try:
        ids = [int(i) for i in request.POST.getlist("item")]
        done = review.review_decide_many(
            item_ids=ids,
            user=request.user,  # type: ignore[arg-type]
            status=request.POST.get("status", ""),
            note=request.POST.get("note", ""),
        )
    except ValueError:
        return _refuse(request, review.ReviewError("Items are numbers."))
    except review.ReviewError as error:
        return _refuse(request, error)
    messages.success(request, f"{len(done)} item(s) {done[0].get_status_display().lower()}.")
    return _back(request)


@staff_permission(roles.REVIEW)
@require_POST
def review_change(request: HttpRequest, item_id: int) -> HttpResponse:
    try:
        review.review_change(
            item_id=item_id,
            user=request.user,  # type: ignore[arg-type]
            action=request.POST.get("action", ""),
            passage=request.POST.get("passage", ""),
            replacement=request.POST.get("replacement", ""),
            note=request.POST.get("note", ""),
        )
    except review.ReviewError as error:
        return _refuse(request, error)
    return _back(request)


@staff_permission(roles.REVIEW_VIEW)
@require_POST
def review_filter_save(request: HttpRequest) -> HttpResponse:
    try:
        review.review_filter_save(
            user=request.user,  # type: ignore[arg-type]
            name=request.POST.get("name", ""),
            params=_posted_filter(request),
        )
    except review.ReviewError as error:
        return _refuse(request, error)
    return _back(request)


@staff_permission(roles.REVIEW_VIEW)
@require_POST
def review_filter_delete(request: HttpRequest, filter_id: int) -> HttpResponse:
    if not review.review_filter_delete(user=request.user, filter_id=filter_id):  # type: ignore[arg-type]
        raise Http404("No such filter.")
    return redirect("datasets-review")
