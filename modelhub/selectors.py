"""Reads for the model hub: dispatch order, access checks, status figures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from django.db.models import QuerySet

from modelhub.models import (
    Endpoint,
    Generation,
    GenerationStatus,
    Model,
    ToolCallEvaluation,
    api_key_env_allowed,
)


def model_list(*, enabled_only: bool = False) -> QuerySet[Model]:
    qs = Model.objects.prefetch_related("endpoints").order_by("name")
    return qs.filter(enabled=True) if enabled_only else qs


def models_available(*, modality: str | None = None) -> QuerySet[Model]:
    """Enabled, arena-eligible models with at least one enabled, healthy endpoint."""
    qs = Model.objects.filter(
        enabled=True,
        arena_eligible=True,
        endpoints__enabled=True,
        endpoints__healthy=True,
    ).distinct()
    if modality:
        qs = qs.filter(modalities__contains=[modality])
    return qs


def endpoints_for_dispatch(*, model: Model) -> list[Endpoint]:
    """Enabled endpoints of a model in dispatch order (see `dispatch_order`), each with its
    `inflight` count."""
    return dispatch_order(
        Endpoint.objects.raw(_dispatch_sql(), [str(GenerationStatus.STREAMING), model.id])
    )


def dispatch_order(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Healthy endpoints first, least loaded (fewest generations streaming) first.

    Unhealthy endpoints stay at the end of the list: when every endpoint looks down, trying one
    beats failing without a request.
    """
    return sorted(endpoints, key=lambda ep: (not ep.healthy, ep.inflight, ep.id))  # type: ignore[attr-defined]


def inflight_sql(alias: str) -> str:
    """A column: how many generations endpoint `alias` streams now (one %s: the streaming status)."""
    return (
        f"(SELECT count(*) FROM {Generation._meta.db_table} s"
        f" WHERE s.endpoint_id = {alias}.id AND s.status = %s) AS inflight"
    )


@lru_cache(maxsize=1)
def _dispatch_sql() -> str:
    """Written out like the statement that claims a generation (services.dispatch), which
    reads the same endpoints and load in the same round trip as its claim."""
    return (
        f"SELECT e.*, {inflight_sql('e')} FROM {Endpoint._meta.db_table} e"
        " WHERE e.model_id = %s AND e.enabled"
    )


def endpoints_to_probe() -> list[Endpoint]:
    """The endpoints the health probe checks: enabled ones of enabled models."""
    return list(Endpoint.objects.filter(enabled=True, model__enabled=True).select_related("model"))


def endpoint_api_key(endpoint: Endpoint) -> str | None:
    """The endpoint's API key, read from the environment variable it names; None when it names
    none, or one that no endpoint may name (a row stored before that rule: see api_key_env_allowed)."""
    name = endpoint.api_key_env
    return os.environ.get(name) if name and api_key_env_allowed(name) else None


@dataclass(frozen=True)
class Viewer:
    user_id: int | None
    session_key: str | None
    is_staff: bool = False


def generation_for_viewer(*, generation_id: str, viewer: Viewer) -> Generation | None:
    """The generation if this viewer may watch it (its owner, by account or session, or staff)."""
    try:
        generation = Generation.objects.get(id=uuid.UUID(str(generation_id)))
    except (Generation.DoesNotExist, ValueError, TypeError):
        return None
    if viewer.is_staff:
        return generation
    if generation.user_id is not None and generation.user_id == viewer.user_id:
        return generation
    if generation.session_key and generation.session_key == viewer.session_key:
        return generation
    return None


def tool_call_scores() -> dict[str, float]:
    """Each model's latest function-calling accuracy (0 to 1), by model name."""
    latest = (
        ToolCallEvaluation.objects.order_by("model_id", "-created_at", "-id")
        .distinct("model_id")
        .values_list("model__name", "accuracy")
    )
    return dict(latest)


def model_sources() -> dict[str, tuple[str, str]]:
    """Each model with a recorded provenance: its ``(source_url, source_label)``, by name."""
    rows = Model.objects.exclude(source_url="").values_list("name", "source_url", "source_label")
    return {name: (url, label) for name, url, label in rows}
