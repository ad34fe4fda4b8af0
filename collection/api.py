"""The researcher API (/api/v1/, OpenAPI schema at /api/v1/openapi.json): leaderboards (current and
snapshots), battles in the battle-log format, and frozen dataset versions with their files.

Every call takes an API token (``Authorization: Bearer ludus_...``, made on the tokens page) that
holds the endpoint's scope, and counts against the token's per-minute limit (the export limit).
Lists are paginated with ``limit`` and ``offset``."""

from __future__ import annotations

from datetime import datetime
from itertools import islice
from typing import Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, NinjaAPI, Query, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer

from arena import ratelimit
from arena import selectors as arena_selectors
from arena.apitokens import token_find, token_touch
from arena.leaderboard import export as leaderboard_export
from arena.leaderboard import selectors as leaderboard_selectors
from arena.models import ApiToken
from collection import dataset_views, datasets, exports

MAX_LIMIT = 500
# Pages walk rows in order; past this, take a file (a snapshot's battles.jsonl, a version's files).
MAX_OFFSET = 1_000_000


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = token_find(raw=token.strip())
        if found is None:
            return None  # 401
        token_touch(token=found)
        request.user = found.user
        return found


api = NinjaAPI(
    title="Ludus researcher API",
    version="1",
    auth=TokenAuth(),
    urls_namespace="api-v1",
    # No Swagger page: ninja's loads from a CDN with an inline script, which the site's
    # Content-Security-Policy blocks. The schema is what clients and generators read.
    docs_url=None,
    description=__doc__,
)


def _grant(request: HttpRequest, scope: str) -> None:
    """403 unless the token holds ``scope``; 429 past the token's per-minute limit."""
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    if scope not in token.scopes:
        raise HttpError(403, f"This token lacks the {scope} scope.")
    if not ratelimit.hit("api", [(f"token:{token.id}", settings.ARENA_EXPORTS_PER_MINUTE)]):
        raise HttpError(429, "Too many requests. Please wait a minute.")


class Detail(Schema):
    detail: Any


# Every endpoint may answer these ({"detail": ...}): no or a bad token, a missing scope, nothing
# there, bad parameters, past the rate limit.
ERRORS: dict[int, type[Schema]] = {401: Detail, 403: Detail, 404: Detail, 422: Detail, 429: Detail}


class Page(Schema):
    limit: int = Field(100, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


def _window(page: Page) -> tuple[int, int]:
    return page.offset, page.offset + page.limit


# -- leaderboards -----------------------------------------------------------------------------


class SnapshotOut(Schema):
    snapshot: int
    created_at: str
    refreshed_at: str
    method: str
    params: dict[str, Any]
    vote_hash: str
    votes_counted: int
    votes_excluded: dict[str, Any]


class SnapshotPage(Schema):
    items: list[SnapshotOut]
    next_offset: int | None


class LeaderboardOut(SnapshotOut):
    data: dict[str, Any]


def _leaderboard(snapshot: Any) -> dict[str, Any]:
    return leaderboard_export.snapshot_export(snapshot=snapshot) | {"data": snapshot.data}


@api.get("/leaderboard", response={200: LeaderboardOut, **ERRORS}, tags=["leaderboards"])
def leaderboard_current(request: HttpRequest) -> dict[str, Any]:
    """The latest leaderboard snapshot with its boards."""
    _grant(request, "leaderboard:read")
    snapshot = leaderboard_selectors.snapshot_latest()
    if snapshot is None:
        raise HttpError(404, "No leaderboard yet.")
    return _leaderboard(snapshot)


@api.get("/leaderboard/snapshots", response={200: SnapshotPage, **ERRORS}, tags=["leaderboards"])
def leaderboard_snapshots(request: HttpRequest, page: Query[Page]) -> dict[str, Any]:
    """Every snapshot, newest first (without boards: fetch one for them)."""
    _grant(request, "leaderboard:read")
    start, stop = _window(page)
    snapshots = list(leaderboard_selectors.snapshots_newest_first()[start : stop + 1])
    items = [leaderboard_export.snapshot_export(snapshot=s) for s in snapshots[: page.limit]]
    return {"items": items, "next_offset": stop if len(snapshots) > page.limit else None}


@api.get(
    "/leaderboard/snapshots/{snapshot_id}",
    response={200: LeaderboardOut, **ERRORS},
    tags=["leaderboards"],
)
def leaderboard_snapshot(request: HttpRequest, snapshot_id: int) -> dict[str, Any]:
    _grant(request, "leaderboard:read")
    snapshot = leaderboard_selectors.snapshot_get(snapshot_id=snapshot_id)
    if snapshot is None:
        raise HttpError(404, "No such snapshot.")
    return _leaderboard(snapshot)


# -- battles ----------------------------------------------------------------------------------


class BattlePage(Schema):
    items: list[dict[str, Any]]
    next_offset: int | None


@api.get("/battles", response={200: BattlePage, **ERRORS}, tags=["battles"])
def battles(request: HttpRequest, page: Query[Page]) -> dict[str, Any]:
    """Votes on two-model battles in the public battle-log format (as the leaderboard exports
    them), oldest first."""
    _grant(request, "battles:read")
    start, stop = _window(page)
    rows = list(islice(arena_selectors.battle_log_rows(extra=True), start, stop + 1))
    items = [leaderboard_export.export_row(row) for row in rows[: page.limit]]
    return {"items": items, "next_offset": stop if len(rows) > page.limit else None}


# -- dataset versions -------------------------------------------------------------------------


class VersionOut(Schema):
    id: int
    dataset: str
    version: int
    rows: int
    rows_revoked: int
    content_hash: str
    frozen_at: datetime | None
    manifest: dict[str, Any]
    report: dict[str, Any]
    files: dict[str, str]


class VersionPage(Schema):
    items: list[VersionOut]
    next_offset: int | None


def _version(request: HttpRequest, version: Any) -> dict[str, Any]:
    data = dataset_views.version_manifest_data(version)
    return {
        "id": version.id,
        "dataset": data["dataset"],
        "version": data["version"],
        "rows": data["rows"],
        "rows_revoked": data["rows_revoked"],
        "content_hash": data["content_hash"],
        "frozen_at": version.frozen_at,
        "manifest": data["manifest"],
        "report": data["report"],
        # "sft": JSON Lines, "sft.parquet": Parquet, for each format.
        "files": {
            key: f"/api/v1/datasets/versions/{version.id}/files/{key}"
            for name in exports.FORMATS
            for key in (name, f"{name}.parquet")
        },
    }


@api.get("/datasets/versions", response={200: VersionPage, **ERRORS}, tags=["datasets"])
def dataset_versions(request: HttpRequest, page: Query[Page]) -> dict[str, Any]:
    """Frozen dataset versions, newest first."""
    _grant(request, "datasets:read")
    start, stop = _window(page)
    versions = list(datasets.versions_frozen().order_by("-frozen_at", "-id")[start : stop + 1])
    return {
        "items": [_version(request, v) for v in versions[: page.limit]],
        "next_offset": stop if len(versions) > page.limit else None,
    }


def _frozen(version_id: int) -> Any:
    version = datasets.versions_frozen().filter(id=version_id).first()
    if version is None:
        raise HttpError(404, "No such frozen dataset version.")
    return version


@api.get("/datasets/versions/{version_id}", response={200: VersionOut, **ERRORS}, tags=["datasets"])
def dataset_version(request: HttpRequest, version_id: int) -> dict[str, Any]:
    _grant(request, "datasets:read")
    return _version(request, _frozen(version_id))


@api.get(
    "/datasets/versions/{version_id}/files/{export_format}",
    tags=["datasets"],
    response={200: None, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "JSON Lines or Parquet",
                "content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {}},
            }
        }
    },
)
def dataset_file(request: HttpRequest, version_id: int, export_format: str) -> Any:
    """One export format of a version (sft, dpo, kto, battles, trees) as JSON Lines
    (``sft.jsonl``, or plain ``sft``) or Parquet (``sft.parquet``, the version's manifest in the
    file's metadata), streamed; rows revoked since the freeze are left out."""
    _grant(request, "datasets:read")
    name, _, file_type = export_format.partition(".")
    file_type = file_type or "jsonl"
    if name not in exports.FORMATS or file_type not in dataset_views.FILE_TYPES:
        names = ", ".join(f"{f}.jsonl, {f}.parquet" for f in exports.FORMATS)
        raise HttpError(404, f"Files: {names}.")
    version = _frozen(version_id)
    response = StreamingHttpResponse(
        dataset_views.version_file(name, file_type, version),
        content_type=dataset_views.FILE_TYPES[file_type],
    )
    response["X-Content-SHA256"] = version.content_hash
    return response
