"""Reads for the fine-tuning pages: jobs, the launch form's choices, and the loss curve."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from collection.models import DatasetVersion, FinetuneJob, VersionStatus
from modelhub.models import Engine, Model

CURVE_WIDTH, CURVE_HEIGHT, CURVE_PAD = 480, 160, 6


def jobs_recent(limit: int = 100) -> QuerySet[FinetuneJob]:
    return FinetuneJob.objects.select_related(
        "version", "version__dataset", "base_model", "promoted_model"
    )[:limit]


def job_detail(*, job_id: int) -> FinetuneJob | None:
    return (
        FinetuneJob.objects.select_related(
            "version", "version__dataset", "base_model", "judge_model", "promoted_model"
        )
        .filter(id=job_id)
        .first()
    )


def launch_choices() -> dict[str, Any]:
    return {
        "versions": DatasetVersion.objects.filter(status=VersionStatus.DONE).select_related(
            "dataset"
        ),
        "models": Model.objects.filter(engine=Engine.LOCAL).exclude(path=""),
    }


def loss_curve(history: list[list[float]]) -> dict[str, Any]:
    """The loss history as an SVG polyline fitted to the curve's box (pure arithmetic)."""
    if not history:
        return {"points": "", "width": CURVE_WIDTH, "height": CURVE_HEIGHT}
    steps = [float(p[0]) for p in history]
    losses = [float(p[1]) for p in history]
    low, high = min(losses), max(losses)
    first, last = min(steps), max(steps)
    span_x = (last - first) or 1.0
    span_y = (high - low) or 1.0
    inner_w, inner_h = CURVE_WIDTH - 2 * CURVE_PAD, CURVE_HEIGHT - 2 * CURVE_PAD
    points = " ".join(
        f"{CURVE_PAD + (s - first) / span_x * inner_w:.1f},"
        f"{CURVE_PAD + (high - loss) / span_y * inner_h:.1f}"
        for s, loss in zip(steps, losses, strict=True)
    )
    return {
        "points": points,
        "width": CURVE_WIDTH,
        "height": CURVE_HEIGHT,
        "low": round(low, 4),
        "high": round(high, 4),
        "last": round(losses[-1], 4),
    }
