"""Leaderboard pages and snapshot exports. The page is public and reads the latest snapshot (it
never fits); exports need a logged-in account or an API token (arena/apitokens.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from arena.apitokens import researcher_access
from arena.categories import TOOLS
from arena.leaderboard import export, page, selectors
from arena.leaderboard.boards import ALL
from arena.models import LeaderboardSnapshot
from modelhub.selectors import model_sources, tool_call_scores

PAGE = "arena/leaderboard.html"


class LeaderboardOptionsForm(forms.Form):
    rating = forms.ChoiceField(
        required=False, choices=[("bt", "Bradley-Terry"), ("elo", "Online Elo")]
    )
    style = forms.BooleanField(required=False)
    ipw = forms.BooleanField(required=False)
    category = forms.CharField(required=False, max_length=60)
    deprecated = forms.BooleanField(required=False)
    # The snapshot the open page shows: its board polls with it and gets 204 while it is current.
    since = forms.IntegerField(required=False, min_value=1)


def _options(request: HttpRequest) -> page.PageOptions:
    form = LeaderboardOptionsForm(request.GET)
    if not form.is_valid():
        return page.PageOptions()
    return page.PageOptions(
        elo=form.cleaned_data["rating"] == "elo",
        style=form.cleaned_data["style"],
        ipw=form.cleaned_data["ipw"],
        category=form.cleaned_data["category"] or ALL,
        show_deprecated=form.cleaned_data["deprecated"],
    )


def _since(request: HttpRequest) -> int | None:
    form = LeaderboardOptionsForm(request.GET)
    return form.cleaned_data["since"] if form.is_valid() else None


@require_GET
def leaderboard_page(request: HttpRequest) -> HttpResponse:
    """The latest snapshot. The open page's board polls (htmx) with the snapshot it shows and is
    swapped as soon as a newer one is published; 204 (no swap) while it is still the latest, or
    while none is published."""
    snapshot = selectors.snapshot_latest()
    htmx = bool(getattr(request, "htmx", False))
    if htmx and (snapshot is None or _since(request) == snapshot.id):
        return HttpResponse(status=204)
    options = _options(request)
    context: dict[str, Any] = {"snapshot": snapshot, "options": options}
    if snapshot is not None:
        data = page.leaderboard_page_data(snapshot=snapshot, options=options)
        data["plots"] = {k: mark_safe(v) for k, v in data["plots"].items()}
        context |= data
        if data["category"] == TOOLS:
            context["function_calling"] = _function_calling_scores(data)
        _sources(data)
        context["reasons"] = [
            (selectors.EXCLUSION_REASONS.get(k, k), n) for k, n in snapshot.votes_excluded.items()
        ]
        context["excluded_total"] = sum(snapshot.votes_excluded.values())
        context["weights_history"] = selectors.sampling_weights_history()
    template = f"{PAGE}#board" if htmx else PAGE
    return render(request, template, context)


def _function_calling_scores(data: dict[str, Any]) -> bool:
    """The tools board's column: each model's latest function-calling accuracy, in percent (None
    for a model never evaluated), set on the board's rows."""
    scores = tool_call_scores()
    for row in [*data["rows"], *data["provisional"]]:
        score = scores.get(row["model"])
        row["function_calling"] = None if score is None else round(100 * score, 1)
    return True


def _sources(data: dict[str, Any]) -> None:
    """Set each row's provenance link (a fine-tuned model's job and dataset version)."""
    sources = model_sources()
    for row in [*data["rows"], *data["provisional"]]:
        row["source_url"], row["source_label"] = sources.get(row["model"], ("", ""))


def _snapshot(snapshot_id: int) -> LeaderboardSnapshot:
    snapshot = selectors.snapshot_get(snapshot_id=snapshot_id)
    if snapshot is None:
        raise Http404("No such snapshot.")
    return snapshot


@require_GET
@researcher_access
def snapshot_export_json(request: HttpRequest, snapshot_id: int) -> HttpResponse:
    snapshot = _snapshot(snapshot_id)
    response = JsonResponse(
        export.snapshot_export(snapshot=snapshot), json_dumps_params={"indent": 2}
    )
    response["Content-Disposition"] = f'attachment; filename="leaderboard-{snapshot.id}.json"'
    return response


@require_GET
@researcher_access
def snapshot_export_csv(request: HttpRequest, snapshot_id: int) -> HttpResponse:
    snapshot = _snapshot(snapshot_id)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, export.CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(export.snapshot_csv_rows(snapshot=snapshot))
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="leaderboard-{snapshot.id}.csv"'
    return response


@require_GET
@researcher_access
def snapshot_battles_jsonl(request: HttpRequest, snapshot_id: int) -> StreamingHttpResponse:
    snapshot = _snapshot(snapshot_id)
    response = StreamingHttpResponse(
        export.snapshot_battle_lines(snapshot=snapshot),
        content_type="application/x-ndjson; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="battles-{snapshot.id}.jsonl"'
    response["X-Vote-Set-SHA256"] = snapshot.vote_hash
    return response
